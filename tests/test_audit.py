"""Tests for deepfake_detect.data.audit: facts, JPEG quality, hashes, duplicates, shortcuts,
cache."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import photo_like
from PIL import Image

from deepfake_detect.data import audit
from deepfake_detect.data.audit import (
    AuditReport,
    apply_groups,
    audit_dataset,
    audit_records,
    cached_audit,
    default_cache_dir,
    estimate_jpeg_quality,
    find_near_duplicates,
    find_shortcuts,
    hamming_distance,
    image_facts,
    perceptual_hash,
)
from deepfake_detect.data.datasets import ImageRecord, index_dataset, make_split
from deepfake_detect.errors import DataError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HEADSHOTS = SHARED_DATA / "headshots-sg2"


# ---------------------------------------------------------------------------------------------
# Helpers


def noise_image(rng: np.random.Generator, size: int = 32) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8))


def save(image: Image.Image, path: Path, fmt: str, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt, **options)
    return path


def write_dataset(root: Path, n: int, real: dict, fake: dict, seed: int = 0) -> Path:
    """real/ and fake/ folders of noise images; each dict gives fmt, suffix, size, options."""
    rng = np.random.default_rng(seed)
    for name, spec in (("real", real), ("fake", fake)):
        for i in range(n):
            image = noise_image(rng, spec.get("size", 32))
            suffix = spec.get("suffix", ".png" if spec["fmt"] == "PNG" else ".jpg")
            save(image, root / name / f"{name}{i:03d}{suffix}", spec["fmt"], **spec.get("opt", {}))
    return root


def record(path: Path, label: int, source: str = "s", split: str | None = None) -> ImageRecord:
    return ImageRecord(
        path=path, label=label, source=source, group=f"{source}/{path.stem}", split=split
    )


def jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def brute_force_clusters(hashes, max_distance, fine=None, fine_distance=None):
    """All pairs, union-find by hand: the reference for find_near_duplicates."""
    keep = [
        i for i, h in enumerate(hashes) if h is not None and (fine is None or fine[i] is not None)
    ]
    parent = {i: i for i in keep}

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for a in keep:
        for b in keep:
            close = a < b and hamming_distance(hashes[a], hashes[b]) <= max_distance
            if close and (fine is None or hamming_distance(fine[a], fine[b]) <= fine_distance):
                parent[root(b)] = root(a)
    groups: dict[int, list[int]] = {}
    for i in keep:
        groups.setdefault(root(i), []).append(i)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def flip_bits(rng: np.random.Generator, value: int, count: int, width: int = 64) -> int:
    for bit in rng.choice(width, size=count, replace=False):
        value ^= 1 << int(bit)
    return value


# ---------------------------------------------------------------------------------------------
# Facts of one image


def test_facts_come_from_the_bytes_not_the_name(tmp_path):
    png_named_jpg = save(noise_image(np.random.default_rng(0)), tmp_path / "a.JPG", "PNG")
    facts = image_facts(record(png_named_jpg, 0, split="train"))
    assert facts.format == "PNG"
    assert facts.extension == ".jpg"
    assert facts.extension_mismatch
    assert (facts.width, facts.height, facts.mode) == (32, 32, "RGB")
    assert facts.jpeg_quality is None
    assert facts.file_size == png_named_jpg.stat().st_size
    assert facts.phash is not None and len(facts.phash) == 16
    assert facts.error is None
    assert (facts.label, facts.source, facts.split) == (0, "s", "train")


def test_jpeg_facts(tmp_path):
    image = noise_image(np.random.default_rng(1), 48).convert("L")
    path = save(image, tmp_path / "b.jpeg", "JPEG", quality=83)
    facts = image_facts(record(path, 1))
    assert (facts.format, facts.mode, facts.jpeg_quality) == ("JPEG", "L", 83)
    assert not facts.extension_mismatch


@pytest.mark.parametrize(
    "content", [b"not an image at all", b"\xff\xd8\xff\xe0" + b"\x00" * 40, b""]
)
def test_unreadable_file_is_recorded_not_fatal(tmp_path, content):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(content)
    facts = image_facts(record(bad, 1))
    assert facts.error and "bad.jpg" in facts.error
    assert facts.phash is None
    assert facts.file_size == len(content)


def test_truncated_jpeg_is_unreadable_like_in_the_loader(tmp_path):
    data = jpeg_bytes(photo_like(np.random.default_rng(2), 128), 90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    facts = image_facts(record(path, 0))
    assert facts.error and "cut.jpg" in facts.error
    assert (facts.format, facts.width) == ("JPEG", 128)  # the header was still readable


def test_missing_file_is_recorded(tmp_path):
    facts = image_facts(record(tmp_path / "gone.png", 0))
    assert facts.error and "no such file" in facts.error


# ---------------------------------------------------------------------------------------------
# JPEG quality


@pytest.mark.parametrize("quality", [5, 10, 25, 49, 50, 51, 75, 85, 90, 95, 100])
def test_jpeg_quality_estimate_is_exact(quality):
    data = jpeg_bytes(photo_like(np.random.default_rng(quality)), quality)
    with Image.open(io.BytesIO(data)) as image:
        assert estimate_jpeg_quality(image.quantization) == quality


def test_jpeg_quality_in_zigzag_order():
    with Image.open(io.BytesIO(jpeg_bytes(photo_like(np.random.default_rng(3)), 75))) as image:
        natural = list(image.quantization[0])
    zigzag = [natural[i] for i in audit.facts._ZIGZAG]
    assert estimate_jpeg_quality({0: zigzag}) == 75


def test_jpeg_quality_without_tables():
    assert estimate_jpeg_quality({}) is None
    assert estimate_jpeg_quality({1: [1] * 64}) is None


# ---------------------------------------------------------------------------------------------
# Perceptual hash


def test_phash_survives_resizing_and_reencoding():
    rng = np.random.default_rng(4)
    originals = [photo_like(rng, 128) for _ in range(12)]
    for image in originals:
        copy = Image.open(io.BytesIO(jpeg_bytes(image.resize((64, 64), Image.LANCZOS), 75)))
        assert hamming_distance(perceptual_hash(image), perceptual_hash(copy)) <= 4
    hashes = [perceptual_hash(image) for image in originals]
    others = [hamming_distance(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    assert min(others) > 12


def test_phash_shape():
    image = photo_like(np.random.default_rng(5))
    assert 0 <= perceptual_hash(image) < 1 << 64
    assert 0 <= perceptual_hash(image, 16) < 1 << 256
    # The DC coefficient is the mean brightness: above the median of the others.
    assert perceptual_hash(image) >> 63 == 1
    with pytest.raises(ValueError):
        perceptual_hash(image, 1)


def test_phash_of_blank_images_is_stable():
    assert perceptual_hash(Image.new("RGB", (40, 40), "white")) == perceptual_hash(
        Image.new("L", (90, 90), 255)
    )


# ---------------------------------------------------------------------------------------------
# Near-duplicate search


@pytest.mark.parametrize("max_distance", [0, 1, 3, 6, 10])
def test_near_duplicates_equal_brute_force(max_distance):
    rng = np.random.default_rng(max_distance)
    hashes: list[int | None] = [int(h) for h in rng.integers(0, 2**63, size=150, dtype=np.int64)]
    # Planted: near copies at and around the limit, chains, exact copies, missing hashes.
    for _ in range(60):
        source = hashes[rng.integers(len(hashes))]
        if source is not None:
            flips = int(rng.integers(0, max_distance + 3))
            hashes.append(flip_bits(rng, source, min(flips, 64)))
    hashes += [hashes[0], hashes[0], None, None]
    assert find_near_duplicates(hashes, max_distance) == brute_force_clusters(hashes, max_distance)


def test_near_duplicates_with_fine_hashes_equal_brute_force():
    rng = np.random.default_rng(11)
    base = [(int(rng.integers(0, 2**62)), int(rng.integers(0, 2**62))) for _ in range(80)]
    hashes, fine = [h for h, _ in base], [f << 190 | f for _, f in base]
    for _ in range(80):
        i = int(rng.integers(len(base)))
        hashes.append(flip_bits(rng, hashes[i], int(rng.integers(0, 6))))
        fine.append(flip_bits(rng, fine[i], int(rng.integers(0, 40)), width=256))
    hashes.append(hashes[3])
    fine.append(None)
    got = find_near_duplicates(hashes, 4, fine_hashes=fine, fine_distance=20)
    assert got == brute_force_clusters(hashes, 4, fine, 20)
    assert got != find_near_duplicates(hashes, 4)  # the fine hash did reject some pairs


def test_giant_bucket_of_identical_hashes_is_fast():
    hashes = [1 << 63] * 5000 + [0x0123456789ABCDEF, 0x0123456789ABCDEE, 0xFEDCBA9876543210]
    start = time.perf_counter()
    clusters = find_near_duplicates(hashes, 6)
    assert time.perf_counter() - start < 5
    assert clusters == [list(range(5000)), [5000, 5001]]


def test_near_duplicates_edge_cases():
    assert find_near_duplicates([]) == []
    assert find_near_duplicates([None, 5]) == []
    assert find_near_duplicates([7, 7]) == [[0, 1]]
    with pytest.raises(ValueError):
        find_near_duplicates([1, 2], 64)


# ---------------------------------------------------------------------------------------------
# Shortcuts


def shortcut_names(report: AuditReport, scope: str = "all") -> set[str]:
    return {s.attribute for s in report.shortcuts if s.scope == scope}


def test_format_shortcut(tmp_path):
    root = write_dataset(
        tmp_path / "d", 12, {"fmt": "PNG"}, {"fmt": "JPEG", "opt": {"quality": 90}}
    )
    report = audit_dataset(root)
    by_name = {s.attribute: s for s in report.shortcuts}
    assert by_name["format"].balanced_accuracy == 1.0
    assert by_name["format"].detail == "real: PNG 100%; fake: JPEG 100%"
    assert "jpeg_quality" in by_name
    assert "SHORTCUT: format" in report.format_text()


def test_size_shortcut(tmp_path):
    spec = {"fmt": "JPEG", "opt": {"quality": 90}}
    root = write_dataset(tmp_path / "d", 12, {**spec, "size": 32}, {**spec, "size": 48})
    report = audit_dataset(root)
    size = [s for s in report.shortcuts if s.attribute == "size"]
    assert [(s.scope, s.balanced_accuracy) for s in size] == [("all", 1.0)]
    assert "format" not in shortcut_names(report)


def test_clean_dataset_has_no_shortcut(tmp_path):
    spec = {"fmt": "JPEG", "opt": {"quality": 90}}
    root = write_dataset(tmp_path / "d", 20, spec, spec, seed=3)
    report = audit_dataset(root)
    assert report.shortcuts == []
    assert "No shortcut found" in report.format_text()


def test_shortcut_per_source(tmp_path):
    jpeg = {"fmt": "JPEG", "opt": {"quality": 90}}
    write_dataset(tmp_path / "d" / "clean", 10, jpeg, jpeg, seed=1)
    write_dataset(tmp_path / "d" / "leaky", 10, {"fmt": "PNG"}, jpeg, seed=2)
    report = audit_dataset(tmp_path / "d")
    assert "format" in shortcut_names(report, "leaky")
    assert "format" not in shortcut_names(report, "clean")


def test_values_seen_once_predict_nothing():
    # Every image its own size, as with uncropped photos: no size shortcut.
    facts = [
        audit.ImageFacts(
            f"{i}.jpg",
            i % 2,
            "s",
            None,
            "JPEG",
            ".jpg",
            False,
            100 + i,
            80,
            "RGB",
            90,
            1000,
            "0" * 16,
        )
        for i in range(40)
    ]
    assert find_shortcuts(facts) == []


def test_shortcuts_skip_a_scope_with_one_class():
    facts = [audit.ImageFacts(f"{i}.png", 0, "s", None, format="PNG") for i in range(5)]
    assert find_shortcuts(facts) == []


# ---------------------------------------------------------------------------------------------
# Reports and duplicates


def test_extension_mismatch_counted(tmp_path):
    root = write_dataset(
        tmp_path / "d", 6, {"fmt": "PNG", "suffix": ".jpg"}, {"fmt": "JPEG", "suffix": ".jpg"}
    )
    summary = audit_dataset(root).summary()
    tables = summary["sources"]["d"]
    assert tables["real"]["extension_mismatches"] == 6
    assert tables["fake"]["extension_mismatches"] == 0
    assert tables["real"]["format"] == {"PNG": 6}
    assert tables["fake"]["jpeg_quality"] == {"q75": 6}


def make_duplicates(tmp_path: Path) -> list[ImageRecord]:
    """Two sources; one photo in both (resized, re-encoded), on different splits and classes."""
    rng = np.random.default_rng(7)
    photo = photo_like(rng, 128)
    records = [
        record(save(photo, tmp_path / "a" / "real" / "photo.png", "PNG"), 0, "a", "train"),
        record(
            save(photo.resize((64, 64)), tmp_path / "b" / "fake" / "copy.jpg", "JPEG", quality=70),
            1,
            "b",
            "test",
        ),
    ]
    for i in range(8):
        for label, name in ((0, "real"), (1, "fake")):
            path = save(photo_like(rng), tmp_path / "a" / name / f"{i}.png", "PNG")
            records.append(record(path, label, "a", None))
    return records


def test_near_duplicates_across_splits_classes_and_sources(tmp_path):
    records = make_duplicates(tmp_path)
    report = audit_records(records, workers=1)
    assert len(report.duplicate_clusters) == 1
    cluster = report.duplicate_clusters[0]
    assert cluster["paths"] == sorted(str(r.path) for r in records[:2])
    assert cluster["cross_split"] and cluster["cross_class"] and cluster["cross_source"]
    assert sorted(cluster["splits"]) == ["test", "train"]
    assert report.groups == {str(records[0].path): "dup-000000", str(records[1].path): "dup-000000"}
    assert report.summary()["duplicates"] == {
        "clusters": 1,
        "images": 2,
        "within": 0,
        "cross_split": 1,
        "cross_class": 1,
        "cross_source": 1,
    }


def test_apply_groups_keeps_duplicates_together(tmp_path):
    records = [dataclasses.replace(r, split=None) for r in make_duplicates(tmp_path)]
    report = audit_records(records, workers=1)
    grouped = apply_groups(records, report)
    assert grouped[0].group == grouped[1].group == "dup-000000"
    assert grouped[2:] == records[2:]
    for seed in range(5):
        split = make_split(grouped, valid_fraction=0.3, test_fraction=0.3, seed=seed)
        assert split[0].split == split[1].split


def test_apply_groups_cannot_move_fixed_splits(tmp_path):
    records = make_duplicates(tmp_path)
    grouped = apply_groups(records, audit_records(records, workers=1))
    assert grouped[0].group == "dup-000000/train"
    assert grouped[1].group == "dup-000000/test"
    make_split(grouped)  # still accepted: the report is what flags the leak


def test_report_to_dict_is_json(tmp_path):
    records = make_duplicates(tmp_path)
    bad = tmp_path / "a" / "real" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    records.append(record(bad, 0, "a"))
    report = audit_records(records, workers=2)
    data = json.loads(json.dumps(report.to_dict()))
    assert set(data) == {"summary", "shortcuts", "duplicates", "unreadable"}
    assert data["unreadable"] == [{"path": str(bad), "error": report.facts[-1].error}]
    assert data["summary"]["unreadable"] == 1
    assert len(report.to_dict(include_images=True)["images"]) == len(records)
    text = report.format_text()
    assert "broken.png" in text and "Near-duplicates: 1 clusters" in text


def test_empty_records_are_a_data_error(tmp_path):
    with pytest.raises(DataError):
        audit_records([])
    with pytest.raises(DataError):
        cached_audit([], cache_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# Cache


def test_cache_hit_and_invalidation(tmp_path, monkeypatch):
    root = write_dataset(tmp_path / "d", 5, {"fmt": "PNG"}, {"fmt": "JPEG"})
    records = index_dataset([root])
    cache = tmp_path / "cache"
    first = cached_audit(records, cache_dir=cache, workers=1)
    assert len(list(cache.glob("*.json"))) == 1

    def no_reading(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    with monkeypatch.context() as patch:
        patch.setattr(audit, "compute_facts", no_reading)
        second = cached_audit(records, cache_dir=cache)
    assert second == first

    # Rewrite one file with other content (and a later mtime): the facts are read again.
    changed = records[0].path
    save(Image.new("RGB", (20, 10), "red"), changed, "JPEG")
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    third = cached_audit(records, cache_dir=cache, workers=1)
    assert third.facts[0].format == "JPEG" and third.facts[0].width == 20
    assert len(list(cache.glob("*.json"))) == 2



def test_the_cache_answers_only_under_the_same_pixel_limit(tmp_path):
    from deepfake_detect.data.images import set_max_pixels

    root = write_dataset(tmp_path / "d", 2, {"fmt": "PNG"}, {"fmt": "PNG"})
    records = index_dataset([root])
    cache = tmp_path / "cache"
    assert all(f.error is None for f in cached_audit(records, cache_dir=cache, workers=1).facts)
    set_max_pixels(10)  # every image is over it: unreadable, not what the cache says
    try:
        low = cached_audit(records, cache_dir=cache, workers=1)
    finally:
        set_max_pixels(None)
    assert all("over the limit of 10" in f.error for f in low.facts)
    assert all(f.error is None for f in cached_audit(records, cache_dir=cache, workers=1).facts)

def test_cache_takes_labels_from_the_records_and_survives_damage(tmp_path):
    root = write_dataset(tmp_path / "d", 3, {"fmt": "PNG"}, {"fmt": "PNG"})
    records = index_dataset([root])
    cache = tmp_path / "cache"
    cached_audit(records, cache_dir=cache, workers=1)
    resplit = make_split(records, valid_fraction=0.3, test_fraction=0.3)
    report = cached_audit(resplit, cache_dir=cache, workers=1)
    assert [f.split for f in report.facts] == [r.split for r in resplit]
    for path in cache.glob("*.json"):
        path.write_text("{ not json")
    assert cached_audit(records, cache_dir=cache, workers=1).facts[0].format == "PNG"


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPFAKE_DETECT_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine" / "audit"
    monkeypatch.delenv("DEEPFAKE_DETECT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "deepfake-detect" / "audit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "deepfake-detect" / "audit"


# ---------------------------------------------------------------------------------------------
# The shared data


@pytest.mark.skipif(not HEADSHOTS.is_dir(), reason=f"shared data not found at {HEADSHOTS}")
def test_headshots_format_shortcut_and_lying_extensions():
    report = audit_dataset(HEADSHOTS)
    flagged = {s.attribute: s for s in report.shortcuts}
    assert flagged["format"].balanced_accuracy == 1.0
    assert "extension_mismatch" in flagged
    tables = report.summary()["sources"]["headshots-sg2"]
    assert tables["real"]["extension_mismatches"] + tables["fake"]["extension_mismatches"] == 2000
    assert tables["real"]["format"] == {"PNG": 2000}
    assert tables["fake"]["jpeg_quality"] == {"q75": 2000}
