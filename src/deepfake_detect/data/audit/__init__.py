"""Audit a dataset for the problems that let a detector cheat: shortcuts and near-duplicates.

A real/fake classifier learns whatever separates the classes most easily. When the reals are
PNG and the fakes JPEG, or every fake has one size, that is the file format or the size, not
the face, and the model fails on the first JPEG photograph it meets. The same photo on both
sides of a train/test split inflates the scores. The audit looks at every file's bytes (never
its name) and reports:

- per image (`facts`): true format, extension mismatch, size, mode, JPEG quality, file size,
  and a perceptual hash (`ImageFacts`);
- shortcuts (`shortcuts`): attributes that alone predict the class (`find_shortcuts`);
- near-duplicates (`duplicates`): clusters of images with close perceptual hashes
  (`find_near_duplicates`), flagged when they cross splits, classes or sources; `apply_groups`
  (`report`) turns them into split groups so that `make_split` keeps each cluster on one side;
- the facts are cached per dataset (`cache`), so a second audit of the same files is quick.

Label convention: real = 0, fake = 1.
"""

from deepfake_detect.data.audit.cache import cached_audit, default_cache_dir
from deepfake_detect.data.audit.duplicates import find_near_duplicates
from deepfake_detect.data.audit.facts import (
    AUDIT_VERSION,
    ImageFacts,
    estimate_jpeg_quality,
    hamming_distance,
    image_facts,
    perceptual_hash,
)
from deepfake_detect.data.audit.report import (
    AuditReport,
    apply_groups,
    audit_dataset,
    audit_records,
    compute_facts,
    report_from_facts,
)
from deepfake_detect.data.audit.shortcuts import Shortcut, attribute_value, find_shortcuts

__all__ = [
    "AUDIT_VERSION",
    "AuditReport",
    "ImageFacts",
    "Shortcut",
    "apply_groups",
    "attribute_value",
    "audit_dataset",
    "audit_records",
    "cached_audit",
    "compute_facts",
    "default_cache_dir",
    "estimate_jpeg_quality",
    "find_near_duplicates",
    "find_shortcuts",
    "hamming_distance",
    "image_facts",
    "perceptual_hash",
    "report_from_facts",
]
