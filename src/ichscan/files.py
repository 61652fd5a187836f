"""Files: outputs that never look complete when half-written, names a header cannot choose, inputs
that are regular files, and worker processes that die with their parent."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import stat
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Final

# Temporary names made here: ".<name>.<pid>-<8 hex>.tmp<suffix>" (files) and
# ".<name>.<pid>-<8 hex>.tmp" / ".old" (folders). The pid lets a later run tell debris of a killed
# run (its process is gone) from the work of a run still going.
_TEMPORARY: Final[re.Pattern[str]] = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.(?:tmp|old)(?:\.\w+)?$")
_SAFE_COMPONENT: Final[re.Pattern[str]] = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}")


def _tag() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def is_safe_component(name: str) -> bool:
    """True when `name` can be used as one file name as is: 1-128 characters among letters,
    digits, ``. _ -``, starting with a letter or digit, no ``..`` (so never ``.``, ``..``, a path,
    a hidden file or an empty name). DICOM UIDs (digits and dots) and RSNA ids (``ID_<hex>``) pass.
    """
    return bool(_SAFE_COMPONENT.fullmatch(name)) and ".." not in name


def safe_component(name: str) -> str:
    """`name` itself when `is_safe_component`, else ValueError: a header value never chooses where
    a file goes (``../x``, ``/etc``, ``..`` or an empty UID are refused, not rewritten)."""
    if not is_safe_component(name):
        raise ValueError(f"{name!r} is not usable as a file name (letters, digits, '.', '_', '-' only)")
    return name


def printable_path(path: str | os.PathLike[str]) -> str:
    """A path as text that any UTF-8 writer accepts: bytes that are not UTF-8 become ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_utf8_path(path: str | os.PathLike[str]) -> bool:
    """True when the path's bytes are valid UTF-8 (so it can be stored in Parquet/CSV and read back)."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class NotRegularFile(OSError):
    """The path is a FIFO, socket, device or folder: never opened for reading (a FIFO would hang)."""


def file_kind(mode: int) -> str:
    """'FIFO', 'socket', 'device', 'folder' or 'regular file' for an `st_mode`."""
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISDIR(mode):
        return "folder"
    return "regular file" if stat.S_ISREG(mode) else "special file"


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a regular file for binary reading; `NotRegularFile` for anything else.

    The file is opened non-blocking and checked with `fstat` on the open descriptor, so a FIFO
    (or a file swapped for one after the folder was listed) is refused at once instead of
    waiting forever for a writer.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(file_kind(mode))
        return os.fdopen(fd, "rb")  # O_NONBLOCK has no effect on a regular file
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the suffix (``x.parquet`` → ``.x.parquet.<pid>-<rand>.tmp.parquet``)
    so that libraries choosing a format by extension still work. On error the temporary file is
    removed; after a kill, `remove_stale_temporaries` of the folder removes it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{_tag()}.tmp{target.suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary sibling folder of `path`; when the block succeeds it replaces
    `path` (whatever was there before is removed), so the folder never mixes two runs' files.

    On error the temporary folder is removed and `path` is left as it was. A kill leaves at most
    the temporary sibling (or, between the two renames, the old folder under a temporary name and
    no `path`); `remove_stale_temporaries(path.parent)` cleans both up and restores the old one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent, only=target.name)
    tag = _tag()
    tmp = target.with_name(f".{target.name}.{tag}.tmp")
    tmp.mkdir()
    try:
        yield tmp
        old = target.with_name(f".{target.name}.{tag}.old")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str], *, only: str | None = None) -> list[Path]:
    """Remove what killed runs left in `folder` by `atomic_path` / `atomic_folder`; return it.

    Only names made by this module whose process is gone are touched (a run still going keeps its
    temporaries). An old folder left between the two renames of `atomic_folder` (its target
    missing) is renamed back instead of removed. `only` restricts to temporaries of that name.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TEMPORARY.match(entry.name)
        if match is None or (only is not None and match["name"] != only) or _alive(int(match["pid"])):
            continue
        target = folder / match["name"]
        if entry.name.endswith(".old") and entry.is_dir() and not target.exists():
            os.replace(entry, target)  # killed between the two renames: the old result is complete
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


_PR_SET_PDEATHSIG: Final[int] = 1


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process die when its parent does, even by SIGKILL.

    On Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; then, if the parent is already gone (it died
    before the call), exit at once. Elsewhere a no-op (the pool's own pipes end the workers when
    the parent exits normally). Use as (part of) a process pool's initializer.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: best effort
            return
        if os.getppid() != parent_pid:
            os._exit(1)
