"""Atomic file writes: a reader never sees a half-written cache, prediction or record file.

Files get the mode any file the user creates gets (0666 less the umask), so a group sharing a
study folder or a cache can read them; `tempfile.mkstemp` alone would leave them at 0600.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def current_umask() -> int:
    """The process umask, read without changing it where Linux reports it (`/proc/self/status`)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once (the only portable way to read it)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """Mode of a new regular file under the current umask (e.g. 0644 under umask 022)."""
    return 0o666 & ~current_umask()


def temporary_beside(path: str | Path) -> tuple[int, Path]:
    """An open descriptor and path of a new temporary file next to `path`, with the umask's mode.

    The name starts with a dot and ends in `.tmp`, so an interrupted write is recognisable.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, new_file_mode())
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, Path(tmp)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Call `write(handle)` on a temporary file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    fd, tmp = temporary_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically write UTF-8 text."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
