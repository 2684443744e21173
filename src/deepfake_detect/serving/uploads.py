"""Reading an upload: the body counted as it arrives, then its multipart parts, in memory.

Starlette's own form parser spools files over 1 MB to a temporary file; uploads here must never
touch the disk, so the body is read into memory up to the limit and parsed with
python-multipart's streaming parser, which keeps each part's bytes in a list.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

FIELD = "file"
MAX_FILENAME = 120
_UNSAFE_NAME = re.compile(r"[^\w.\- ()\[\]+,@]")


class UploadError(Exception):
    """A request the service refuses as a whole, with its HTTP status."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class Upload:
    """One file of a request: its (cleaned) name, declared type and bytes."""

    filename: str
    content_type: str
    data: bytes


async def read_body(
    chunks: AsyncIterator[bytes], limit: int, content_length: str | None
) -> bytes:
    """The whole body, or 413 as soon as it passes `limit` (a declared length over it is
    refused before a byte is read; a false or missing one is caught by the count)."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise UploadError(400, f"invalid Content-Length {content_length[:40]!r}") from None
        if declared > limit:
            raise UploadError(413, too_large(declared, limit))
    received = bytearray()
    async for chunk in chunks:
        received += chunk
        if len(received) > limit:
            raise UploadError(413, too_large(None, limit))
    return bytes(received)


def too_large(size: int | None, limit: int) -> str:
    """The 413's detail; `size` None when the body came without a length (chunked) and was
    cut off at the limit."""
    what = f"is {size / 2**20:.1f} MiB, over" if size is not None else "goes past"
    return f"request body {what} the limit of {limit / 2**20:.1f} MiB"


def parse_files(body: bytes, content_type: str | None, max_files: int) -> list[Upload]:
    """The parts named `file` of a multipart/form-data body, in order; other fields ignored."""
    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        raise UploadError(
            415, "send the images as multipart/form-data, one or more parts named 'file'"
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "multipart/form-data without a boundary")
    parts = _Parts(max_files)
    parser = MultipartParser(boundary, parts.callbacks())
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise UploadError(400, f"malformed multipart body ({exc})") from None
    if not parts.done:
        raise UploadError(400, "malformed multipart body (it ends before its last boundary)")
    if not parts.files:
        raise UploadError(400, "no image: send one or more parts named 'file'")
    return parts.files


def clean_filename(raw: str | None, index: int) -> str:
    """A name safe to echo back and to show: no folders, no control or markup characters."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME.sub("_", name).strip(" .")[:MAX_FILENAME]
    return name or f"upload-{index}"


@dataclass
class _Parts:
    """python-multipart callbacks that collect the parts named `file` in memory."""

    max_files: int
    files: list[Upload] = field(default_factory=list)
    done: bool = False
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _field: bytearray = field(default_factory=bytearray)
    _value: bytearray = field(default_factory=bytearray)
    _data: list[bytes] = field(default_factory=list)

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_part_data": lambda data, start, end: self._data.append(data[start:end]),
            "on_part_end": self._end,
            "on_end": self._finish,
        }

    def _begin(self) -> None:
        self._headers.clear()
        self._data.clear()

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _end(self) -> None:
        _, disposition = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition.get(b"name") != FIELD.encode():
            return
        if len(self.files) == self.max_files:
            raise UploadError(400, f"more than {self.max_files} files in one request")
        raw_name = disposition.get(b"filename", b"").decode("utf-8", "replace")
        content_type = self._headers.get(b"content-type", b"").decode("latin-1")[:100]
        name = clean_filename(raw_name, len(self.files))
        self.files.append(Upload(name, content_type, b"".join(self._data)))

    def _finish(self) -> None:
        self.done = True
