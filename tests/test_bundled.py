"""The bundled model: it loads, scores a photo, kept its held-out split apart, and holds up there.

The held-out checks need ../shared/data beside the repository (as in CI); on a user's machine
they are skipped with the reason.
"""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepfake_detect import load_detector
from deepfake_detect.data.audit import cached_audit
from deepfake_detect.data.datasets import index_dataset
from deepfake_detect.data.images import load_image
from deepfake_detect.data.manifest import MANIFEST_NAME, read_manifest
from deepfake_detect.inference.detector import BUNDLED_DIR, bundled_model_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason="../shared/data is not beside the repository"
)
# The second edition's targets are accuracy >= 0.96 and ROC-AUC >= 0.99 per source (0.995 on
# headshots-sg2); the shipped model does not reach all of them (MODEL_CARD.md, held-out at JPEG
# 75, at its threshold of 0.6235: faces140k-extra 0.954 / 0.992, faces140k-sample 0.958 /
# 0.996, headshots-sg2 0.956 / 0.992). These floors sit one to three points under what it
# measured, so that any regression of the bundled model fails here; raise them with the model.
FLOORS = {
    "faces140k-extra": (0.935, 0.982),
    "faces140k-sample": (0.94, 0.982),
    "headshots-sg2": (0.935, 0.982),
}
# Fake-only sources held out (../shared/fake-only, named from the data root): the share caught
# at the shipped threshold. The model caught all 210 held-out diffusion faces as they are.
CAUGHT_FLOORS = {"diffusion-faces": 0.95}


@pytest.fixture(scope="module")
def detector():
    return load_detector(device="cpu")


@pytest.fixture(scope="module")
def manifest():
    return read_manifest(BUNDLED_DIR / MANIFEST_NAME)


@pytest.fixture(scope="module")
def heldout(manifest):
    """Held-out rows whose files are present, with their images decoded once."""
    rows = [r for r in manifest if r.split == "test"]
    return [(r, load_image(SHARED_DATA / r.path)) for r in rows]


def test_bundled_model_ships_with_its_card_and_fits_the_size_limit():
    assert bundled_model_dir() == BUNDLED_DIR
    names = {p.name for p in BUNDLED_DIR.iterdir()}
    assert {"model.safetensors", "config.json", MANIFEST_NAME, "MODEL_CARD.md"} <= names
    model_files = sum(
        (BUNDLED_DIR / n).stat().st_size for n in ("model.safetensors", "config.json")
    )
    assert model_files <= 25_000_000
    card = (BUNDLED_DIR / "MODEL_CARD.md").read_text()
    assert "non-commercial" in card.lower()


def test_bundled_model_scores_the_example_photo(detector):
    (prediction,) = detector.score([REPO / "examples" / "astronaut.png"])
    assert prediction.error is None and 0.0 <= prediction.score <= 1.0
    assert prediction.label == "real"  # a NASA photograph, no generator involved
    config = detector.config
    backbones = {m["backbone"] for m in config.members} or {config.backbone}
    assert backbones == {"tf_efficientnet_lite0"}
    assert 0.0 < detector.threshold < 1.0


def test_manifest_keeps_heldout_files_hashes_and_groups_out_of_training(manifest):
    by_split = defaultdict(list)
    for row in manifest:
        by_split[row.split].append(row)
    train_hashes = {r.sha256 for r in by_split["train"] + by_split["valid"]}
    train_groups = {r.group for r in by_split["train"] + by_split["valid"]}
    train_paths = {r.path for r in by_split["train"] + by_split["valid"]}
    for row in by_split["test"]:
        assert row.sha256 not in train_hashes and row.group not in train_groups
        assert row.path not in train_paths
    for source in {r.source for r in manifest}:
        total = sum(r.source == source for r in manifest)
        held = sum(r.source == source for r in by_split["test"])
        assert held >= 0.2 * total, source  # at least a fifth of each source folder


@needs_shared
def test_no_near_duplicate_crosses_the_heldout_line(manifest):
    """Audit the data afresh: no cluster of near-duplicates has members on both sides."""
    split_of = {r.path: r.split for r in manifest}
    report = cached_audit(index_dataset([SHARED_DATA]))
    crossing = []
    for cluster in report.duplicate_clusters:
        sides = {
            split_of[Path(p).relative_to(SHARED_DATA).as_posix()] == "test"
            for p in cluster["paths"]
        }
        if len(sides) > 1:
            crossing.append(cluster["paths"])
    assert not crossing
    assert len(report.duplicate_clusters) >= 100  # the FFHQ people shared by both sources


def jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def scores_of(detector, inputs) -> np.ndarray:
    predictions = detector.score(inputs, batch_size=64)
    assert all(p.error is None for p in predictions)
    return np.array([p.score for p in predictions])


@needs_shared
def test_heldout_accuracy_and_auc_per_source_at_jpeg_75(detector, heldout):
    from sklearn.metrics import roc_auc_score

    labels = np.array([r.label for r, _ in heldout])
    sources = np.array([r.source for r, _ in heldout])
    scores = scores_of(detector, [jpeg(image, 75) for _, image in heldout])
    assert set(sources) == set(FLOORS) | set(CAUGHT_FLOORS)
    for source, min_caught in CAUGHT_FLOORS.items():
        caught = np.mean(scores[sources == source] >= detector.threshold)
        assert caught >= min_caught, (source, caught)
    for source, (min_accuracy, min_auc) in FLOORS.items():
        mask = sources == source
        accuracy = np.mean((scores[mask] >= detector.threshold) == labels[mask])
        auc = roc_auc_score(labels[mask], scores[mask])
        assert accuracy >= min_accuracy, (source, accuracy)
        assert auc >= min_auc, (source, auc)


@needs_shared
def test_reencoding_heldout_images_barely_moves_scores(detector, heldout):
    """JPEG quality 90 for every image (for the PNG reals of headshots-sg2, PNG to JPEG)."""
    originals = scores_of(detector, [SHARED_DATA / r.path for r, _ in heldout])
    reencoded = scores_of(detector, [jpeg(image, 90) for _, image in heldout])
    labels = np.array([r.label for r, _ in heldout])
    for label in (0, 1):
        mask = labels == label
        assert abs(np.median(originals[mask]) - np.median(reencoded[mask])) <= 0.05, label
    flips = np.mean((originals >= detector.threshold) != (reencoded >= detector.threshold))
    assert flips <= 0.02, flips
