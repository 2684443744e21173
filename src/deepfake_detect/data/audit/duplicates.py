"""Near-duplicates: clusters of images whose perceptual hashes are close (banded search,
then union-find)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

FINE_DISTANCE_SCALE = 5
"""A near-duplicate pair must also be within FINE_DISTANCE_SCALE * max_distance on the fine hash.

Measured on ../shared/data (5,247 aligned faces): the 100 true cross-source pairs are within
2 bits of 64 and 6 of 256, but 68 unrelated pairs are within 6 of 64, since aligned faces share
their coarsest structure; alone, the 64-bit threshold chains them into clusters (one of 62
faces at 8 bits, of 1,188 at 10). Of those 68, none comes within 44 bits of 256 (no unrelated
pair at all within 36), so 30 rejects them while keeping every true pair, and faces resized,
re-encoded at quality 20, blurred, brightened by 20% or cropped by 1% (all within 32 bits).
The fine hash needs the mid-frequency detail photos have: copies of flat, very smooth images
may be missed.
"""

# A bucket is compared in blocks of rows so that no block holds more distances than this: a
# bucket of 50,000 distinct hashes would otherwise need a 2.5 billion-entry matrix.
_BLOCK_ELEMENTS = 4_000_000


# ---------------------------------------------------------------------------------------------
# Near-duplicates


def find_near_duplicates(
    hashes: Sequence[int | None],
    max_distance: int = 6,
    *,
    fine_hashes: Sequence[int | None] | None = None,
    fine_distance: int | None = None,
) -> list[list[int]]:
    """Clusters of indices whose 64-bit hashes are within max_distance bits, transitively.

    Only clusters of two or more are returned, each sorted, ordered by their first index.
    Indices whose hash is None are left out. With `fine_hashes` (256-bit), a pair must also be
    within `fine_distance` (default FINE_DISTANCE_SCALE * max_distance) on those, and an
    index without a fine hash is left out.

    Multi-index hashing, not all pairs: the 64 bits are cut into max_distance + 1 bands, and two
    hashes within max_distance agree exactly on at least one band (pigeonhole), so only hashes
    that share a (band, value) bucket are compared. Identical codes are merged before that, so
    a thousand copies of one blank image cost one comparison, not half a million.
    """
    if not 0 <= max_distance < 64:
        raise ValueError(f"max_distance must be within 0..63, got {max_distance}")
    indices, codes = _hash_codes(hashes, fine_hashes)
    if len(indices) < 2:
        return []
    unique, owner = np.unique(codes, axis=0, return_inverse=True)
    owner = owner.ravel()  # numpy 2.0 to 2.1 give it the shape of the axis-0 input
    limit = FINE_DISTANCE_SCALE * max_distance if fine_distance is None else fine_distance
    pairs = _close_pairs(unique, max_distance, limit if fine_hashes is not None else None)
    roots = _union_find(len(unique), pairs)
    return _clusters(indices, roots[owner])


def _hash_codes(
    hashes: Sequence[int | None], fine_hashes: Sequence[int | None] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices with hashes, and their codes as uint64 rows: [hash] or [hash, fine (4 words)]."""
    if fine_hashes is not None and len(fine_hashes) != len(hashes):
        raise ValueError("hashes and fine_hashes must have the same length")
    fines = fine_hashes if fine_hashes is not None else [0] * len(hashes)
    kept = [
        i
        for i, (h, f) in enumerate(zip(hashes, fines, strict=True))
        if h is not None and f is not None
    ]
    words = 1 if fine_hashes is None else 5
    codes = np.zeros((len(kept), words), dtype=np.uint64)
    for row, index in enumerate(kept):
        codes[row, 0] = hashes[index]
        for word in range(1, words):
            codes[row, word] = (fines[index] >> (64 * (4 - word))) & 0xFFFF_FFFF_FFFF_FFFF
    return np.array(kept, dtype=np.int64), codes


def _bands(max_distance: int) -> list[tuple[int, int]]:
    """(shift, width) of max_distance + 1 bands that tile the 64 bits, widths differing by 1."""
    count = max_distance + 1
    widths = [64 // count + (1 if band < 64 % count else 0) for band in range(count)]
    shifts = np.cumsum([0, *widths[:-1]])
    return [(int(shift), width) for shift, width in zip(shifts, widths, strict=True)]


def _close_pairs(codes: np.ndarray, max_distance: int, fine_limit: int | None) -> np.ndarray:
    """Row pairs (i < j) of distinct `codes` within the distances, found bucket by bucket."""
    found: list[np.ndarray] = [np.empty((0, 2), dtype=np.int64)]
    keys = codes[:, 0]
    for shift, width in _bands(max_distance):
        values = (keys >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(values, kind="stable")
        starts = np.flatnonzero(np.r_[True, values[order][1:] != values[order][:-1], True])
        for start, stop in zip(starts[:-1], starts[1:], strict=True):
            if stop - start > 1:
                found.append(_bucket_pairs(codes, order[start:stop], max_distance, fine_limit))
    pairs = np.concatenate(found)
    return np.unique(pairs, axis=0) if len(pairs) else pairs  # a pair may share several bands


def _bucket_pairs(
    codes: np.ndarray, members: np.ndarray, max_distance: int, fine_limit: int | None
) -> np.ndarray:
    """Close pairs within one bucket, all against all, in row blocks to bound the memory."""
    members = np.sort(members)
    keys = codes[:, 0]
    block = max(1, _BLOCK_ELEMENTS // len(members))
    found = []
    for start in range(0, len(members), block):
        rows = members[start : start + block]
        close = _popcount(keys[rows, None] ^ keys[None, members]) <= max_distance
        close &= rows[:, None] < members[None, :]
        r, c = np.nonzero(close)
        first, second = rows[r], members[c]
        if fine_limit is not None:  # only the few coarse matches pay for the 256-bit test
            fine = _popcount(codes[first, 1:] ^ codes[second, 1:]).sum(axis=1)
            first, second = first[fine <= fine_limit], second[fine <= fine_limit]
        found.append(np.stack([first, second], axis=1))
    return np.concatenate(found)


_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per uint64 element (np.bitwise_count exists from numpy 2.0 on)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    as_bytes = np.ascontiguousarray(words)[..., None].view(np.uint8)
    return _BYTE_BITS[as_bytes].sum(axis=-1)


def _union_find(count: int, pairs: np.ndarray) -> np.ndarray:
    """The root of each of `count` items after joining the pairs."""
    parent = list(range(count))

    def root(item: int) -> int:
        while parent[item] != item:
            parent[item] = parent[parent[item]]  # path halving keeps the trees flat
            item = parent[item]
        return item

    for a, b in pairs.tolist():
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(item) for item in range(count)], dtype=np.int64)


def _clusters(indices: np.ndarray, roots: np.ndarray) -> list[list[int]]:
    """Group indices by root; groups of two or more, sorted, by first index."""
    members: dict[int, list[int]] = defaultdict(list)
    for index, item_root in zip(indices.tolist(), roots.tolist(), strict=True):
        members[item_root].append(index)
    return sorted(sorted(group) for group in members.values() if len(group) > 1)
