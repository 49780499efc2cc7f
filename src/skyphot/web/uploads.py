"""Streaming multipart uploads straight to disk, with the size limit enforced as bytes
arrive: a body over the limit is refused (413) and everything written so far removed. The
same holds for the upload storage quota (507)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from skyphot.errors import InputError
from skyphot.web.errors import FieldError, PayloadTooLargeError, UploadQuotaError

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.fz", ".fit.fz", ".fz", ".fits.gz", ".fit.gz",
                 ".fts.gz")
MAX_FIELD_BYTES = 64 * 1024


@dataclass
class StoredFile:
    """One uploaded file on disk."""

    filename: str  # sanitised client file name
    path: Path
    size: int  # bytes
    sha256: str


@dataclass
class Upload:
    """Form fields and files of one multipart request; files live in ``directory``."""

    directory: Path
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, StoredFile] = field(default_factory=dict)

    def discard(self) -> None:
        """Remove everything this upload wrote."""
        shutil.rmtree(self.directory, ignore_errors=True)


MAX_FILENAME = 200  # characters kept of a client's file name


def safe_filename(name: str) -> str:
    """A file name safe to store: no directories, only harmless characters."""
    base = re.split(r"[\\/]", name)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._+-]", "_", base).lstrip(".")
    if len(cleaned) > MAX_FILENAME:
        # Shorten the stem, never the type (".fits.fz" decides how the file is read).
        found = re.search(r"(\.[A-Za-z0-9]{1,8}){1,2}$", cleaned)
        suffix = found.group(0) if found else ""
        cleaned = cleaned[:MAX_FILENAME - len(suffix)] + suffix
    return cleaned or "upload"


def is_fits_name(name: str) -> bool:
    """True for .fits, .fits.fz, .fits.gz and their usual spellings."""
    return name.lower().endswith(FITS_SUFFIXES)


def too_large_message(limit_bytes: int) -> str:
    """The message of a 413."""
    return (
        f"the upload is larger than the limit of {limit_bytes / 1e6:g} MB (max_body_size); "
        "compress the frame (e.g. .fits.fz) or ask the administrator to raise max_body_size"
    )


def storage_used(root: Path) -> int:
    """Bytes taken by the files under ``root`` (0 if it does not exist)."""
    total = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += (Path(directory) / name).stat().st_size
            except FileNotFoundError:
                continue  # removed while we walked (a refused upload cleaning up)
    return total


def quota_message(quota_bytes: int, used_bytes: int) -> str:
    """The message of a 507: the quota, what is in use, what to do."""
    return (
        f"the upload storage is full: keeping this upload would exceed the quota of "
        f"{quota_bytes / 1e6:g} MB (upload_quota_mb; {used_bytes / 1e6:.2f} MB in use); "
        "ask the administrator to free space or raise upload_quota_mb"
    )


class _Receiver:
    def __init__(self, upload: Upload, file_fields: dict[str, tuple[str, ...]]) -> None:
        self.upload = upload
        self.file_fields = file_fields
        self.headers: dict[str, str] = {}
        self._name = b""
        self._value = b""
        self._field: str | None = None
        self._filename: str | None = None
        self._buffer = bytearray()
        self._stream: IO[bytes] | None = None
        self._hash = hashlib.sha256()
        self._size = 0

    # header callbacks
    def on_part_begin(self) -> None:
        self.headers = {}
        self._field, self._filename, self._stream = None, None, None
        self._buffer = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self._name.decode("latin-1").lower()] = self._value.decode("latin-1")
        self._name, self._value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get("content-disposition", ""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._field = name
        if filename is None:
            return
        if name not in self.file_fields:
            raise FieldError(name, f"field {name!r} does not take a file")
        self._filename = safe_filename(filename.decode("utf-8", "replace"))
        if not self._filename.lower().endswith(self.file_fields[name]):
            raise FieldError(
                name, f"{self._filename!r} has an unsupported type; expected a file ending in "
                f"{', '.join(self.file_fields[name])}",
            )
        target = self.upload.directory / name
        target.mkdir(parents=True, exist_ok=True)
        self._stream = (target / self._filename).open("wb")
        self._hash = hashlib.sha256()
        self._size = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._stream is not None:
            self._stream.write(chunk)
            self._hash.update(chunk)
            self._size += len(chunk)
            return
        self._buffer += chunk
        if len(self._buffer) > MAX_FIELD_BYTES:
            raise FieldError(self._field or "form", f"form field {self._field!r} is too long")

    def on_part_end(self) -> None:
        if self._stream is not None:
            self._stream.close()
            assert self._field is not None and self._filename is not None
            if self._size > 0:
                self.upload.files[self._field] = StoredFile(
                    self._filename, Path(self._stream.name), self._size, self._hash.hexdigest()
                )
            self._stream = None
        elif self._field is not None:
            self.upload.fields[self._field] = self._buffer.decode("utf-8", "replace")

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


async def receive_multipart(
    request: Request,
    *,
    root: Path,
    max_bytes: int,
    file_fields: dict[str, tuple[str, ...]],
    quota_bytes: int | None = None,
) -> Upload:
    """Stream a multipart body into a new directory under ``root``.

    ``file_fields`` maps each field that may carry a file to its accepted suffixes. Raises
    ``PayloadTooLargeError`` past ``max_bytes`` (the whole body), ``UploadQuotaError`` when
    the files under ``root`` plus the body would exceed ``quota_bytes`` (None: no quota) and
    ``InputError`` for a body that is not multipart; nothing stays on disk after an error.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise InputError("send the upload as multipart/form-data (a form with a file field)")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLargeError(too_large_message(max_bytes))
    room: int | None = None  # bytes the quota still allows
    used = 0
    if quota_bytes is not None:
        # Approximate under concurrent uploads: each sees what the others wrote so far.
        used = await run_in_threadpool(storage_used, root)
        room = quota_bytes - used
        if room <= 0 or (declared is not None and declared.isdigit() and int(declared) > room):
            raise UploadQuotaError(quota_message(quota_bytes, used))
    upload = Upload(directory=root / uuid.uuid4().hex)
    upload.directory.mkdir(parents=True)
    receiver = _Receiver(upload, file_fields)
    callbacks = {name: getattr(receiver, name) for name in (
        "on_part_begin", "on_part_data", "on_part_end", "on_header_field", "on_header_value",
        "on_header_end", "on_headers_finished")}
    parser = MultipartParser(options[b"boundary"], callbacks)  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise PayloadTooLargeError(too_large_message(max_bytes))
            if room is not None and quota_bytes is not None and received > room:
                raise UploadQuotaError(quota_message(quota_bytes, used))
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as err:
        receiver.close()
        upload.discard()
        raise InputError(f"the multipart body is malformed ({err}); send it again") from err
    except BaseException:
        receiver.close()
        upload.discard()
        raise
    return upload
