"""Atomic file writes: a reader never sees a half-written cache, prediction or record file, nor a
half-written report or summary folder (`replaced_folder`), and no command replaces a folder it did not make.

Files get the mode any file the user creates gets (0666 less the umask), so a group sharing a
study folder or a cache can read them; `tempfile.mkstemp` alone would leave them at 0600.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from ecgkeras.errors import EcgkerasError


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


# --------------------------------------------------------------------------- folders this package made

FOLDER_MARKER = ".ecgkeras"  # in a folder ecgkeras made: its kind and the entries it wrote (JSON)


def _marker(folder: Path) -> dict | None:
    """The folder's marker ({"kind": ..., "entries": [...]}), None when it has none or it is unreadable."""
    try:
        marker = json.loads((folder / FOLDER_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or not isinstance(marker.get("entries"), list):
        return None
    return marker


def check_replaceable(target: str | Path, kind: str, option: str | None = None) -> None:
    """Refuse, on one line, unless `target` is missing, an empty folder, or a `kind` folder ecgkeras made."""
    target = Path(target)
    choose = f"choose an empty or new folder with {option}" if option else "move its files away first"
    if target.is_dir():
        if not any(target.iterdir()):
            return
        marker = _marker(target)
        if marker and marker.get("kind") == kind:
            return
        what = (f"is a {marker['kind']} folder, not a {kind} folder" if marker else
                f"holds files and no {FOLDER_MARKER} marker of a {kind} folder ecgkeras wrote, so it is not replaced")
        raise EcgkerasError(f"{target} {what}: {choose}")
    if target.exists() or target.is_symlink():
        raise EcgkerasError(f"{target} is {'a broken link' if not target.exists() else 'not a folder'}: {choose}")


def _beside(target: Path, role: str) -> Path:
    return target.with_name(f".{target.name}.{role}")


def _finish_swap(target: Path) -> None:
    """Finish an earlier replacement of `target`, also one interrupted between its renames.

    The previous folder comes back when the new one never arrived; otherwise the entries it held
    that ecgkeras did not write (a user's notes) move into the new folder and the rest is removed.
    """
    previous = _beside(target, "previous")
    marker = _marker(previous) if previous.is_dir() else None
    if marker is None:
        return
    if not target.exists():
        os.replace(previous, target)
        return
    for path in previous.iterdir():
        if path.name not in marker["entries"] and path.name != FOLDER_MARKER and not (target / path.name).exists():
            os.replace(path, target / path.name)
    shutil.rmtree(previous)


@contextlib.contextmanager
def _parent_locked(target: Path) -> Iterator[None]:
    """Hold an OS lock on the folder holding `target`, so concurrent swaps of it take turns."""
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def replaced_folder(target: str | Path, kind: str, option: str | None = None) -> Iterator[Path]:
    """A staging folder beside `target` that replaces it whole when the block succeeds.

    `target` must be replaceable (`check_replaceable`); `option` is what the user names it with.
    The block writes the new content into the staging folder; on success the folder gets the
    marker of `kind`, the old `target` is renamed aside, the staging folder renamed in, and the
    old one removed (its entries ecgkeras did not write are kept). On an exception or Ctrl-C the
    staging folder is removed and `target` is left as it was.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _parent_locked(target):
            _finish_swap(target)
        check_replaceable(target, kind, option)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
        staging.chmod(0o777 & ~current_umask())
    except OSError as exc:
        raise EcgkerasError(f"cannot write {target} ({exc.strerror or exc}): "
                            + (f"choose a writable folder with {option}" if option else "check its permissions")) \
            from None
    try:
        yield staging
        entries = sorted(path.name for path in staging.iterdir())
        atomic_write_text(staging / FOLDER_MARKER, json.dumps({"kind": kind, "entries": entries}, indent=1) + "\n")
        with _parent_locked(target):
            check_replaceable(target, kind, option)  # again: another command may have written it meanwhile
            if _marker(target) is not None:
                os.replace(target, _beside(target, "previous"))
            os.replace(staging, target)  # over a missing or empty folder
            _finish_swap(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        with _parent_locked(target):
            _finish_swap(target)
