"""`train --reframe`: a source's images cropped around their faces, as --faces crops them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script, tiny_options
from PIL import Image

from deepfake_detect.data.datasets import ImageRecord
from deepfake_detect.errors import DataError
from deepfake_detect.inference.faces import CropPolicy, load_face_detector
from deepfake_detect.training.reframe import GRID, REFRAME_NAME, on_grid, reframe

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_on_grid_moves_the_corner_onto_the_jpeg_block_grid_and_keeps_the_side():
    assert on_grid((13, 7, 213, 207)) == (8, 0, 208, 200)
    assert on_grid((16, 24, 100, 108)) == (16, 24, 100, 108)  # on the grid already
    for box in [(5, 9, 70, 74), (8, 15, 263, 270)]:
        x1, y1, x2, y2 = on_grid(box)
        assert x1 % GRID == 0 and y1 % GRID == 0 and x2 - x1 == box[2] - box[0]
        assert x1 <= box[0] and y1 <= box[1]  # towards the origin: never outside the image


@pytest.fixture(scope="module")
def portraits(tmp_path_factory):
    """Two loosely framed portraits (a real face pasted at 150 px into 300x300) and a picture
    with no face."""
    groups = load_script("face_detectors")
    files = groups.face_files(SHARED_DATA) if SHARED_DATA.is_dir() else []
    if len(files) < 2:
        pytest.skip("../shared/data is not beside the repository")
    folder = tmp_path_factory.mktemp("portraits")
    paths = []
    for i, path in enumerate(files[:2]):
        canvas = groups.background(random.Random(i), (300, 300))
        with Image.open(path) as face:
            canvas.paste(face.convert("RGB").resize((150, 150)), (60 + 20 * i, 50))
        paths.append(folder / f"p{i}.png")
        canvas.save(paths[-1])
    groups.background(random.Random(9), (300, 300)).save(folder / "none.png")
    return paths, folder / "none.png"


def records_of(paths, source="loose", label=1):
    return [ImageRecord(p, label, source, f"{source}/{p.stem}", "train") for p in paths]


def test_reframe_crops_the_named_source_around_its_faces(portraits, tmp_path, monkeypatch):
    from deepfake_detect.training import reframe as module

    faces, none = portraits
    others = [ImageRecord(faces[0], 0, "tight", "tight/p0", "train")]
    records = records_of([*faces, none]) + others
    out, boxes = reframe(records, ["loose"], CropPolicy(), tmp_path / REFRAME_NAME)
    assert set(boxes) == {str(p) for p in [*faces, none]}  # the named source only
    assert boxes[str(none)] is None and out[2].crop is None  # no face: kept whole
    assert out[3] == others[0] and out[3].crop is None  # another source: untouched
    detector = load_face_detector()
    for record in out[:2]:
        x1, y1, x2, y2 = record.crop
        assert x1 % GRID == 0 and y1 % GRID == 0 and abs((x2 - x1) - (y2 - y1)) <= 1  # rounding
        with Image.open(record.path) as image:
            crop = image.convert("RGB").crop(record.crop)
        face = max(detector.detect(crop), key=lambda f: f.side)
        # the face now fills the crop as the training faces fill theirs (about 0.74), where
        # it filled about a third of the portrait
        assert 0.65 < face.side / crop.width < 0.85
    # boxes kept in the run folder are read back, not found again
    (tmp_path / REFRAME_NAME).write_text(json.dumps(boxes))

    def no_detector(*args):
        raise AssertionError("looked for faces again")

    monkeypatch.setattr(module, "find_boxes", no_detector)
    again, _ = reframe(records, ["loose"], CropPolicy(), tmp_path / REFRAME_NAME)
    assert again == out


def test_reframe_names_a_source_that_does_not_exist(portraits):
    faces, _ = portraits
    with pytest.raises(DataError, match=r"--reframe nosuch: no source of that name \(sources: "):
        reframe(records_of(faces), ["nosuch"], CropPolicy())


def test_the_dataset_reads_a_record_s_crop(tmp_path):
    from deepfake_detect.data.loaders import ImageDataset

    path = tmp_path / "x.png"
    pixels = np.zeros((64, 80, 3), np.uint8)
    pixels[8:40, 16:48] = 200  # the crop is the bright square
    Image.fromarray(pixels).save(path)
    seen = []

    def transform(image, rng):
        seen.append(image)
        return np.asarray(image, np.float32).transpose(2, 0, 1)

    record = ImageRecord(path, 1, "s", "s/x", "train", crop=(16, 8, 48, 40))
    dataset = ImageDataset([record, ImageRecord(path, 1, "s", "s/x", "train")], transform)
    array, label = dataset[0]
    assert seen[0].size == (32, 32) and float(array.min()) == 200 and label == 1.0
    dataset[1]
    assert seen[1].size == (80, 64)  # no crop: the whole image


def test_train_reframe_crops_what_it_trains_on_and_records_it(multi_source_data, tmp_path,
                                                               monkeypatch):  # fmt: skip
    from deepfake_detect.training import reframe as module
    from deepfake_detect.training.trainer import Trainer

    # synthetic images hold no face: a stand-in detector gives each image the same box
    monkeypatch.setattr(module, "find_boxes", lambda records, policy: {
        str(r.path): [8, 8, 24, 24] for r in records})  # fmt: skip
    run = tmp_path / "run"
    options = tiny_options(multi_source_data, run, reframe=["beta"], frozen_epochs=1,
                           finetune_epochs=1)  # fmt: skip
    trainer = Trainer(options)
    for record in [*trainer.splits.train, *trainer.splits.valid]:
        assert record.crop == ((8, 8, 24, 24) if record.source == "beta" else None)
    assert {r.source for r in trainer.splits.valid} == {"alpha", "beta"}
    boxes = json.loads((run / REFRAME_NAME).read_text())
    assert len(boxes) == sum(r.source == "beta" for s in (trainer.splits.train,
                                                          trainer.splits.valid) for r in s)
    result = trainer.run()
    assert result.config.to_dict()["training"]["reframe"] == ["beta"]
    with pytest.raises(DataError, match="--reframe gamma: no source of that name"):
        Trainer(tiny_options(multi_source_data, tmp_path / "other", reframe=["gamma"]))
    assert not (tmp_path / "other").exists()  # refused before the run folder was made
