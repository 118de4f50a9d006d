"""Atomic file writing, the one implementation every output of the project goes through, and file digests.

A file is written under a temporary name in its own folder and renamed over the target only when the
writer finished: a crash or an exception leaves the old file (or none), never a half-written one.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a fresh temporary path beside `path` (hidden, ending in `suffix`); on success it replaces
    `path`, on failure it is removed.

    Writers that pick the format from the name (matplotlib, numpy's savez, ffmpeg) pass the target's
    suffix. The final file gets the usual mode (0666 minus the umask) instead of mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.[^./]+")


def temp_target(path: str | os.PathLike) -> Path | None:
    """For a temporary file atomic_path made (`.NAME.XXXXXXXX.SUFFIX`, left behind when its process was killed),
    the path it was going to replace; None for any other name."""
    path = Path(path)
    m = _TEMP_NAME.fullmatch(path.name)
    return path.with_name(m.group("name")) if m else None


def write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = False) -> Path:
    """Write `data` to `path` atomically; `fsync` also flushes it to disk before the rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | os.PathLike, text: str, fsync: bool = False) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return write_bytes(path, text.encode("utf-8"), fsync)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in `chunk`-byte blocks (checkpoints, weights, cache keys)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


STORED_SUFFIXES = (".mp4", ".png", ".jpg")     # already compressed: stored as is


def write_zip(path: str | os.PathLike, members: Iterable[tuple[str | os.PathLike, str]]) -> Path:
    """Write the files `members` ((file, name in the zip), in order) into the zip `path`, atomically."""
    import zipfile

    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for src, name in members:
            kind = zipfile.ZIP_STORED if Path(src).suffix.lower() in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
            z.write(src, name, compress_type=kind)
    return Path(path)
