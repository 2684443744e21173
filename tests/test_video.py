"""Videos: recognised by their bytes, sampled at evenly spaced frames, scored per frame and as
a whole (the mean of the frames, with the highest beside it); broken and truncated videos get
an error row like a broken image."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_model

av = pytest.importorskip("av")

from deepfake_detect.data.video import VideoError, is_video, read_frames, sniff_video  # noqa: E402

FPS, FRAMES = 16, 64  # a 4 s clip


def write_clip(path: Path, codec: str = "libx264", frames: int = FRAMES) -> Path:
    """Frame i is a flat grey of level 4 i (mod 256): its pixels say which frame was read."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(frames):
            pixels = np.full((64, 96, 3), (4 * i) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    write_clip(folder / "clip.mp4")
    write_clip(folder / "clip.webm", "libvpx-vp9")
    write_clip(folder / "clip.avi", "mpeg4")
    data = (folder / "clip.webm").read_bytes()
    (folder / "cut.webm").write_bytes(data[: len(data) // 2])
    data = (folder / "clip.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])
    (folder / "noise.mp4").write_bytes(b"\0\0\0\x18ftypisom" + bytes(range(256)) * 40)
    (folder / "renamed.dat").write_bytes((folder / "clip.mp4").read_bytes())
    return folder


@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm", "clip.avi"])
def test_frames_are_sampled_evenly(clips, name):
    frames, duration = read_frames(clips / name, 8)
    assert duration == pytest.approx(FRAMES / FPS, abs=0.1)
    expected = [int((k + 0.5) * FRAMES / 8) for k in range(8)]  # the middle of 8 equal parts
    assert [f.index for f in frames] == expected
    levels = [int(np.asarray(f.image)[10, 10, 0]) // 4 for f in frames]
    assert np.abs(np.array(levels) - expected).max() <= 1  # the pixels of those very frames
    assert all(f.image.mode == "RGB" and f.image.size == (96, 64) for f in frames)


def test_a_video_is_known_by_its_bytes_not_its_name(clips, tmp_path):
    assert is_video(clips / "renamed.dat") and sniff_video((clips / "clip.avi").read_bytes())
    assert not is_video(clips / "missing.mp4")
    png = tmp_path / "image.mp4"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    assert not is_video(png)
    with pytest.raises(Exception, match="not a video file"):
        read_frames(png, 4)


@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm", "clip.avi"])
@pytest.mark.parametrize("count", [FRAMES, 2 * FRAMES])
def test_a_short_clip_gives_every_frame_asked_for(clips, name, count):
    # targets a frame apart or closer, up to the last frame: one decoding pass must serve them
    # all (a new pass per target once read FFmpeg's end of file as a corrupt video)
    frames, _ = read_frames(clips / name, count)
    assert len(frames) == count
    indexes = [f.index for f in frames]
    assert indexes == sorted(indexes) and indexes[-1] == FRAMES - 1
    # webm's timestamps are whole milliseconds and its duration a millisecond long, so its
    # evenly spaced times may step over a frame; the other two give every frame
    missed = 2 if name.endswith(".webm") else 0
    assert len(set(indexes)) >= FRAMES - missed


@pytest.mark.parametrize(
    ("name", "message"),
    [("cut.webm", "truncated video"), ("cut.mp4", "corrupt or truncated video"),
     ("noise.mp4", "corrupt or truncated video")],
)  # fmt: skip
def test_broken_and_truncated_videos_are_one_line_errors(clips, name, message):
    with pytest.raises(VideoError, match=message) as caught:
        read_frames(clips / name, 8)
    assert "\n" not in str(caught.value) and str(caught.value).startswith(str(clips / name))


def test_bad_frame_counts_are_refused(clips):
    for count in (0, 1001):
        with pytest.raises(ValueError, match="--frames must be within"):
            read_frames(clips / "clip.mp4", count)


def test_a_videos_score_is_the_mean_of_its_frames(clips, tmp_path):
    from deepfake_detect.inference import load_detector

    detector = load_detector(make_model(tmp_path / "model"))
    video, cut = detector.score([clips / "clip.mp4", clips / "cut.webm"], frames=4)
    assert [f["frame"] for f in video.frames] == [8, 24, 40, 56]
    frames, _ = read_frames(clips / "clip.mp4", 4)
    alone = detector.score([f.image for f in frames])  # each frame as an image
    got = [f["score"] for f in video.frames]
    assert got == pytest.approx([p.score for p in alone], abs=1e-9)
    assert video.score == pytest.approx(np.mean(got)) and video.max_score == max(got)
    assert video.label == ("fake" if video.score >= detector.threshold else "real")
    assert cut.score is None and "truncated video" in cut.error  # an error row, not a stop
    [faces] = detector.score(clips / "clip.webm", frames=3, faces="on")
    assert all(f["faces"] == [] for f in faces.frames)  # flat grey: no face
    assert faces.warnings == ["no face found in 3 of 3 frames: those were scored whole"]


def test_predict_writes_frame_rows_and_the_videos_row(clips, tmp_path, capsys, monkeypatch):
    from test_cli import run_cli

    model = make_model(tmp_path / "model")
    out = tmp_path / "out.csv"
    code, _, err = run_cli(["predict", str(clips), "--model", str(model), "--frames", "4",
                            "--output", str(out)], capsys, monkeypatch)  # fmt: skip
    assert code == 1  # the broken clips failed; the rest were scored
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:7] == ["path", "score", "label", "error", "frame", "face", "box"]
    mp4 = [r for r in rows if Path(r["path"]).name == "clip.mp4"]
    assert [r["frame"] for r in mp4] == ["8", "24", "40", "56", ""]
    whole = mp4[-1]
    scores = [float(r["score"]) for r in mp4[:-1]]
    assert float(whole["score"]) == pytest.approx(np.mean(scores))
    assert float(whole["max_score"]) == pytest.approx(max(scores))
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"cut.webm", "cut.mp4", "noise.mp4"}
    assert "renamed.dat" not in {Path(r["path"]).name for r in rows}  # folders: by suffix
    code, stdout, _ = run_cli(["predict", str(clips / "renamed.dat"), "--model", str(model),
                               "--frames", "2", "--output", "-", "--format", "jsonl"],
                              capsys, monkeypatch)  # fmt: skip
    assert code == 0  # a file given by name is known by its bytes
    _, record = [json.loads(line) for line in stdout.splitlines()]
    assert len(record["frames"]) == 2 and record["max_score"] >= record["score"]


def test_a_pipe_is_never_taken_for_a_video_nor_opened_to_find_out(tmp_path: Path) -> None:
    # Its first bytes cannot be read without taking them from the image read from it next
    # (/dev/stdin), and opening a named pipe that no one writes to would wait forever.
    import os
    import threading

    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    answers = []
    asking = threading.Thread(target=lambda: answers.append(is_video(fifo)), daemon=True)
    asking.start()
    asking.join(timeout=10)
    assert answers == [False]
    assert is_video(write_clip(tmp_path / "clip.mkv")) and not is_video(tmp_path / "missing")


def test_a_frame_scored_whole_beside_its_faces_counts_its_highest_score():
    from deepfake_detect.cli.outputs import media_rows
    from deepfake_detect.inference.detector import Inputs
    from deepfake_detect.inference.faces import Face

    arrays = [np.zeros((3, 8, 8), np.float32)] * 2
    face = Face((10.0, 10.0, 50.0, 50.0), 0.99)
    auto = Inputs(arrays, None, [face], [], whole=True)  # arrays[0]: the whole frame
    video = Inputs(arrays * 2, None, None, [], [(0, 0.0, auto), (8, 0.5, auto)])
    prediction = video.prediction("v.mp4", iter([0.9, 0.2, 0.1, 0.3]), 0.5)
    first, second = prediction.frames
    assert first["whole_score"] == 0.9 and first["score"] == 0.9 and first["label"] == "fake"
    assert [f["score"] for f in first["faces"]] == [0.2]
    assert second["score"] == 0.3 and second["whole_score"] == 0.1
    assert prediction.score == pytest.approx(0.6) and prediction.max_score == 0.9
    rows = media_rows(prediction.to_dict(), 0.5)  # per frame: the whole frame, then its face
    assert [(r["frame"], r["face"], r["score"]) for r in rows] == [
        (0, "whole", 0.9), (0, 0, 0.2), (8, "whole", 0.1), (8, 0, 0.3), ("", "", prediction.score)]
