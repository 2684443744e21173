"""Progress bars on stderr (tqdm), one look for every command; `enabled=False` draws nothing."""

from __future__ import annotations

from tqdm.auto import tqdm


def progress_bar(total: int, desc: str, enabled: bool):
    return tqdm(total=total, desc=desc, unit="img", leave=False, disable=not enabled)
