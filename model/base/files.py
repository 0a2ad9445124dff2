"""Atomic writes, the one way the project writes a file or folder that something else reads.

A reader sees the old file (or folder) or the whole new one, never part of it: the new one is
written under a temporary name beside it (``.<name>.tmp-<pid>``, or ``.<name>.tmp`` where several
processes fill it, such as every rank's part of a checkpoint), fsynced, then renamed into place and
the rename fsynced. A process killed while writing leaves only a temporary name, which the next
writer of the same path removes (``is_temporary`` finds them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import xxhash

_TMP = ".tmp"


def temporary(path: str | Path, shared: bool = False) -> Path:
    """Where ``path`` is written before the rename: this process's own name, or one every process
    that fills it (ranks of one job) agrees on."""
    path = Path(path)
    return path.with_name(f".{path.name}{_TMP}" if shared else f".{path.name}{_TMP}-{os.getpid()}")


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is an unfinished write (``temporary``'s names)."""
    name = path.name
    return name.startswith(".") and (name.endswith(_TMP) or f"{_TMP}-" in name)


def remove(path: Path) -> None:
    """Remove a file or a folder tree, if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def fsync(path: Path) -> None:
    """Flush one file, or one folder's entries (not what is under them), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Flush a file, or a folder with everything under it, to the disk (a finished temporary: no one
    else writes there)."""
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            for name in files + dirs:
                fsync(Path(root) / name)
    fsync(path)


def publish(tmp: Path, path: Path) -> None:
    """Make the finished temporary ``tmp`` the real ``path``, replacing what was there."""
    fsync_tree(tmp)
    if path.is_dir() and not path.is_symlink():  # os.replace renames onto empty folders only
        shutil.rmtree(path)
    os.replace(tmp, path)
    fsync(path.parent)  # the rename itself; other writers' files there are theirs to flush


@contextlib.contextmanager
def atomic_path(path: str | Path, folder: bool = False) -> Iterator[Path]:
    """A temporary path to write (a created folder where ``folder``), published as ``path`` when the
    block succeeds and removed when it raises."""
    path = Path(path)
    tmp = temporary(path)
    remove(tmp)
    if folder:
        tmp.mkdir(parents=True)
    else:
        tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    except BaseException:
        remove(tmp)
        raise
    publish(tmp, path)


def atomic_folder(folder: str | Path) -> contextlib.AbstractContextManager[Path]:
    """A temporary folder to fill, renamed to ``folder`` (replacing it) once the block succeeds."""
    return atomic_path(folder, folder=True)


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


CHECKSUM = "xxh3_128"
_CHUNK = 16 << 20


def checksum(path: Path) -> str:
    """The file's xxh3-128, hex: a fast non-cryptographic hash (8 GB/s on one core here, against
    1.8 for sha256), so checking an 18 GB checkpoint costs what reading it costs. It finds damage
    (truncation, flipped bits, a half-copied file), not tampering."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
