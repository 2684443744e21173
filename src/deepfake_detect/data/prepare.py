"""From the options of a run to its training and validation records, and from a model folder to
the split an evaluation must use.

`prepare_dataset` indexes the data folders (and fake-only folders), keeps the images a split
manifest names in its split, audits the rest for shortcuts and near-duplicates (a cluster stays on
one side), splits them by group, samples the training set and decodes every image once, so that
a bad file stops a run before hours of work. Training, and anyone who must see the same split,
call it. `evaluation_records` gives `evaluate` the images of one split as the model recorded
it (its run's split.csv or its split manifest), so that test images stay test images.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm.auto import tqdm

from deepfake_detect.data.datasets import (
    SPLIT_NAME,
    ImageRecord,
    index_dataset,
    index_labelled_folder,
    make_split,
    read_split_csv,
    sample_balanced,
    select,
)
from deepfake_detect.data.images import load_image
from deepfake_detect.data.manifest import (
    MANIFEST_NAME,
    apply_manifest_splits,
    file_sha256,
    read_manifest,
)
from deepfake_detect.errors import DataError

log = logging.getLogger("deepfake_detect")


@dataclass(frozen=True)
class DataSpec:
    """Where the images are and how to split and sample them."""

    data: Sequence[Path]
    fake_only: Sequence[Path] = ()
    split_manifest: Path | None = None
    audit: bool = True
    advise_reencode: bool = True  # the audit's shortcut warnings suggest --reencode
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    train_size: int | None = None
    source_train_sizes: tuple[tuple[str, int], ...] = ()  # (source, n): n of its training images
    exclude_sources: tuple[str, ...] = ()  # leave-one-source-out: never trained or validated on
    sample_seed: int = 0
    check_images: bool = True
    progress: bool = False


@dataclass
class Splits:
    """The records to train and validate on; `made` holds every record when the split was decided
    here, by a seeded split or a split manifest (for the caller to record in split.csv: the
    data alone would not give it back), None when it was read from one or is the data's own."""

    train: list[ImageRecord]
    valid: list[ImageRecord]
    made: list[ImageRecord] | None = field(default=None, repr=False)


def prepare_dataset(spec: DataSpec, split_file: Path | None = None) -> Splits:
    """Index the data, reuse (split_file, when it exists) or make the split, sample the
    training set, then check that every image decodes.

    With a split manifest, the images it names keep its split (a shipped model's held-out images
    stay held out) and the others are split around them.
    """
    made = None
    if split_file is not None and split_file.exists():
        records = read_split_csv(split_file)
    else:
        records = index_dataset(spec.data)
        records += fake_only_records(spec.fake_only, {r.source for r in records})
        if spec.split_manifest is not None:
            records = apply_manifest_splits(records, read_manifest(spec.split_manifest))
        if spec.audit:
            records = audit_and_group(records, spec.advise_reencode, spec.progress)
        records = drop_sources(records, spec.exclude_sources)
        if any(r.split is None for r in records):
            records = made = make_split(
                records,
                valid_fraction=spec.valid_fraction,
                test_fraction=spec.test_fraction,
                seed=spec.split_seed,
            )
        elif spec.split_manifest is not None:
            made = records  # a manifest that names every image: evaluate must find its split
    train, valid = select(records, "train"), select(records, "valid")
    for name, part in (("train", train), ("valid", valid)):
        if {r.label for r in part} != {0, 1}:
            raise DataError(f"the {name} split needs both real and fake images")
    for source, n in spec.source_train_sizes:
        train = thin_source(train, source, n, spec.sample_seed)
    if spec.train_size is not None:
        train = sample_balanced(train, spec.train_size, seed=spec.sample_seed)
    if spec.check_images:
        check_images([*train, *valid], spec.progress)
    return Splits(train, valid, made)


def drop_sources(records: list[ImageRecord], sources: Sequence[str]) -> list[ImageRecord]:
    """The records without these sources' images, nor any image in a group with one of theirs:
    a near-duplicate of a left-out image in training would leak it into the test of a
    leave-one-source-out run. Runs after the audit, whose groups span sources."""
    known = {r.source for r in records}
    for source in sources:
        if source not in known:
            raise DataError(f"no source named {source!r} to leave out (sources: "
                            f"{', '.join(sorted(known))})")  # fmt: skip
    left_out = {r.group for r in records if r.source in sources}
    return [r for r in records if r.group not in left_out]


def thin_source(train: list[ImageRecord], source: str, n: int, seed: int) -> list[ImageRecord]:
    """Keep n of a source's training images (half of each class, seeded), and every image of the
    other sources: the points of a learning curve. Validation is never thinned."""
    own = [r for r in train if r.source == source]
    if not own:
        raise DataError(f"--source-train-size {source}: no training images of that source")
    kept = {r.path for r in sample_balanced(own, n, seed=seed)} if n else set()
    return [r for r in train if r.source != source or r.path in kept]


def fake_only_records(folders: Sequence[Path], taken: set[str]) -> list[ImageRecord]:
    """The images of --fake-only folders, each folder a source of fakes only; its name must
    not be that of another source (their counts and splits would mix)."""
    records: list[ImageRecord] = []
    for folder in folders:
        found = index_labelled_folder(folder, 1)
        source = found[0].source
        if source in taken:
            raise DataError(f"--fake-only {folder}: a source named {source!r} exists already")
        taken.add(source)
        records += found
    return records


def audit_and_group(records: list[ImageRecord], advise: bool, progress: bool) -> list[ImageRecord]:
    """Warn loudly about shortcuts; keep near-duplicates in one group (so on one side of the
    split). The audit's facts are cached per dataset, so this is cheap after the first run."""
    from deepfake_detect.data.audit import apply_groups, cached_audit

    report = cached_audit(records, progress=progress)
    for shortcut in report.shortcuts:
        log.warning(
            "WARNING SHORTCUT: %s alone predicts the class in %s (balanced accuracy %.2f): %s%s",
            shortcut.attribute, shortcut.scope, shortcut.balanced_accuracy, shortcut.detail,
            "; consider --reencode jpeg:60-95" if advise else "",
        )  # fmt: skip
    clusters = report.duplicate_clusters
    if clusters:
        log.info("%d near-duplicate clusters kept on one side of the split", len(clusters))
    return apply_groups(records, report)


def check_images(records: Sequence[ImageRecord], progress: bool) -> None:
    """Decode every image once up front, so a bad file stops the run before hours of work."""
    failures = []
    for record in tqdm(records, desc="checking images", unit="img", disable=not progress):
        try:
            load_image(record.path)
        except Exception as exc:  # noqa: BLE001 - every failure is reported together below
            failures.append(str(exc))
    if failures:
        raise DataError(
            f"{len(failures)} of {len(records)} images cannot be read, first: {failures[0]}"
        )


def evaluation_records(
    data: Sequence[str | os.PathLike],
    split: str,
    model_dir: Path | None,
    seed: int = 0,
    label: int | None = None,
) -> list[ImageRecord]:
    """The images of one split ("all" for every image), as the model was trained.

    A run folder's split.csv (written when training made the split) or a shipped model's split
    manifest decides which images are test images, and images they do not know (never trained
    on) count as test; datasets with their own splits (the Kaggle CSVs) keep them; otherwise a
    seeded split is made as `train` makes it. With `label`, each folder is one class only
    (`datasets.index_labelled_folder`): a folder of real photos measures false alarms.
    """
    if label is None:
        records = index_dataset(data)
    else:
        records = [r for root in data for r in index_labelled_folder(root, label)]
    recorded = any(r.split is None for r in records) and has_recorded_split(model_dir)
    if any(r.split is None for r in records):
        # A one-class folder cannot be split by class; without a record, it is all test.
        records = model_split(records, model_dir, seed, unrecorded=label is None)
    chosen = records if split == "all" else select(records, split)
    # images the model was trained or validated on are never its test images: say so, since
    # a user's own folder may hold some of them
    elsewhere = len(records) - len(chosen) if recorded else 0
    if not chosen:
        because = (
            f": all {elsewhere} are in the model's recorded split elsewhere (--split all "
            "scores them)" if elsewhere else ""
        )
        raise DataError(f"no images in the {split} split{because}")
    if elsewhere:
        log.warning(
            "%d of %d images are in the model's recorded split outside %s and are left out "
            "(--split all scores them)", elsewhere, len(records), split,
        )  # fmt: skip
    return chosen


def has_recorded_split(model_dir: Path | None) -> bool:
    """Whether the model records which images it trained on (a run's split.csv, a shipped
    model's split manifest)."""
    if model_dir is None:
        return False
    return (model_dir / SPLIT_NAME).is_file() or (model_dir / MANIFEST_NAME).is_file()


def model_split(
    records: Sequence[ImageRecord], model_dir: Path | None, seed: int, unrecorded: bool = True
):
    """The model's recorded split for these records; without one, the default seeded split
    (`unrecorded`) or every image as test."""
    run_split = model_dir / SPLIT_NAME if model_dir else None
    manifest = model_dir / MANIFEST_NAME if model_dir else None
    if run_split is not None and run_split.is_file():
        known = {r.path.resolve(): r.split for r in read_split_csv(run_split)}
        splits = [known.get(r.path.resolve()) for r in records]
    elif manifest is not None and manifest.is_file():
        known = {row.sha256: row.split for row in read_manifest(manifest)}
        splits = [known.get(file_sha256(r.path)) for r in records]
    elif unrecorded:
        log.warning("no recorded split for these images: making the default seeded split")
        return make_split(records, seed=seed)
    else:
        return [replace(r, split="test") for r in records]
    unseen = sum(s is None for s in splits)
    if unseen:
        log.info("%d of %d images are not in the model's recorded split: counted as test",
                 unseen, len(records))  # fmt: skip
    return [replace(r, split=s or "test") for r, s in zip(records, splits, strict=True)]
