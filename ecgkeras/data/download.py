"""Download PTB-XL 1.0.3 from PhysioNet: resumable, checksum-verified, atomically installed.

`download_ptbxl(dest)` leaves the dataset in `dest/ptbxl` (the folder holding ptbxl_database.csv) or
raises `EcgkerasError`; it never leaves a half-extracted `dest/ptbxl` behind:

1. the zip is fetched to `dest/.downloads/<zip name>.part`, resuming an earlier partial file with an
   HTTP `Range` request (a server that ignores `Range` is handled by starting over);
2. the finished `.part` is renamed to the zip name and extracted into `dest/.ptbxl.extracting-<pid>`
   (members with absolute paths or `..` are refused; the single top-level folder is stripped);
3. every file listed in the dataset's `SHA256SUMS.txt` is hashed and compared;
4. only then is the marker `.ecgkeras-verified` written and the folder renamed to `dest/ptbxl`.

Only the standard library and tqdm are used.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from ecgkeras.errors import EcgkerasError

__all__ = ["PTBXL_URL", "PTBXL_PAGE", "MARKER", "SUMS_FILE", "download_ptbxl", "verify_checksums"]

PTBXL_URL = ("https://physionet.org/static/published-projects/ptb-xl/"
             "ptb-xl-a-large-publicly-available-electrocardiography-dataset-1.0.3.zip")
PTBXL_PAGE = "https://physionet.org/content/ptb-xl/1.0.3/"
MARKER = ".ecgkeras-verified"
SUMS_FILE = "SHA256SUMS.txt"

_USER_AGENT = "ecgkeras (PTB-XL downloader; python-urllib)"
_HASH_CHUNK = 1 << 20
_SUMS_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)\s*$", re.IGNORECASE)
_MANUAL_HINT = (f"check your internet connection, or download PTB-XL 1.0.3 manually from {PTBXL_PAGE}, "
                "unzip it and point --data-dir at the folder holding ptbxl_database.csv")


def download_ptbxl(dest: str | Path, url: str = PTBXL_URL, progress: bool = True, timeout: float = 60.0,
                   chunk_size: int = 1 << 20, keep_zip: bool = False) -> Path:
    """Download, verify and install PTB-XL into `dest/ptbxl`; return that folder.

    A `dest/ptbxl` that holds the verification marker is returned at once, without any network access.
    An interrupted download raises `EcgkerasError`; calling again resumes it. The zip is deleted after a
    successful install unless `keep_zip`, and also when its contents fail verification (so that a retry
    downloads it afresh).
    """
    dest = Path(dest).expanduser()
    final = dest / "ptbxl"
    if (final / MARKER).is_file():
        return final
    if final.exists() and not _is_empty_dir(final):
        raise EcgkerasError(f"{final} exists but is not a verified ecgkeras download; move or delete it and "
                            "run the download again (or, if it already holds PTB-XL, pass it as --data-dir)")
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise EcgkerasError(f"url {url!r} is not an http(s) URL; pass an http:// or https:// address "
                            f"(default {PTBXL_URL})")
    if chunk_size <= 0:
        raise EcgkerasError(f"chunk_size must be a positive number of bytes, got {chunk_size}")
    if not timeout or timeout <= 0:
        raise EcgkerasError(f"timeout must be a positive number of seconds, got {timeout}")

    downloads = dest / ".downloads"
    try:
        downloads.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EcgkerasError(f"cannot create the download folder {downloads}: {_reason(err)}; "
                            "choose another --dest") from err
    _remove_stale_extractions(dest)

    zip_path = downloads / _zip_name(url)
    part = zip_path.with_name(zip_path.name + ".part")
    if not zip_path.is_file():  # a complete zip from an earlier, later-failing run is reused
        try:
            _fetch(url, part, timeout=timeout, chunk_size=chunk_size, progress=progress)
        except EcgkerasError:
            _remove_if_empty(downloads)  # nothing fetched: leave dest as it was
            raise
        os.replace(part, zip_path)

    _install(zip_path, url, dest, final, progress=progress)

    if not keep_zip:
        zip_path.unlink(missing_ok=True)
        _remove_if_empty(downloads)
    return final


def verify_checksums(folder: str | Path, progress: bool = False) -> int:
    """Check every file listed in `folder/SHA256SUMS.txt`; return how many were verified.

    Raises `EcgkerasError` naming the first file that is missing or whose SHA-256 differs.
    Use it to check a PTB-XL copy downloaded by hand.
    """
    folder = Path(folder).expanduser()
    return _verify(folder, progress=progress, where=str(folder),
                   fix="the copy is corrupt or incomplete; delete it and download PTB-XL again")


# --------------------------------------------------------------------------------------------- fetch

def _fetch(url: str, part: Path, *, timeout: float, chunk_size: int, progress: bool) -> None:
    """Make `part` a complete copy of `url`, resuming from its current size when possible."""
    for _attempt in range(3):
        offset = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as err:
            with err:
                if err.code == 416 and offset:
                    _start, _end, total = _parse_content_range(err.headers.get("Content-Range"))
                    if total == offset:
                        return  # the partial file already holds the whole zip
                    part.unlink()  # longer than (or unrelated to) the server's file: start over
                    continue
            raise _network_error(url, f"HTTP {err.code} {err.reason}") from err
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
            raise _network_error(url, _reason(err)) from err

        with response:
            status = response.status
            if status == 206:
                start, end, total = _parse_content_range(response.headers.get("Content-Range"))
                if total is None and end is not None:
                    total = end + 1  # `bytes N-M/*`: at least we know where this response ends
                if start != offset:
                    part.unlink(missing_ok=True)  # not the range we asked for: start over
                    continue
                mode = "ab"
            elif status == 200:
                offset, mode = 0, "wb"  # the server ignored Range (or there was none): start from zero
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.strip().isdigit() else None
            else:
                raise _network_error(url, f"unexpected HTTP status {status}")
            _copy(response, url, part, mode=mode, offset=offset, total=total,
                  chunk_size=chunk_size, progress=progress)
        return
    raise EcgkerasError(f"the server at {url} kept refusing to resume {part}; delete {part} and run the "
                        f"download again, or {_MANUAL_HINT}")


def _copy(response, url: str, part: Path, *, mode: str, offset: int, total: int | None, chunk_size: int,
          progress: bool) -> None:
    """Stream the response body into `part` (appending for a resumed download) with a progress bar."""
    received = offset
    # read1 hands over whatever has arrived, so a timeout or reset loses no bytes already received
    read = getattr(response, "read1", response.read)
    try:
        with open(part, mode) as out, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                           unit_divisor=1024, desc=part.name.removesuffix(".part"),
                                           disable=not progress, leave=False) as bar:
            while True:
                try:
                    chunk = read(chunk_size)
                except (http.client.HTTPException, OSError) as err:  # reset, timeout, incomplete read
                    out.flush()
                    raise _interrupted(url, part, received, total, _reason(err)) from err
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
                if total is not None and received > total:
                    break
            out.flush()
            os.fsync(out.fileno())
    except EcgkerasError:
        raise
    except OSError as err:
        raise EcgkerasError(f"cannot write {part}: {_reason(err)}; free some disk space or choose "
                            "another --dest, then run the download again") from err
    if total is not None and received < total:
        raise _interrupted(url, part, received, total, "the connection closed early")
    if total is not None and received > total:
        part.unlink(missing_ok=True)
        raise EcgkerasError(f"the server at {url} sent more bytes than announced ({received} > {total}); "
                            f"the partial download was deleted, run the download again")


def _interrupted(url: str, part: Path, received: int, total: int | None, why: str) -> EcgkerasError:
    of = f" of {total}" if total is not None else ""
    return EcgkerasError(f"download of {url} interrupted after {received}{of} bytes ({why}); "
                         f"run the download again to resume from {part}")


def _parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """`bytes 10-99/100` -> (10, 99, 100); `bytes */100` -> (None, None, 100); unknown parts are None."""
    match = _CONTENT_RANGE.match(value or "")
    if not match:
        return None, None, None
    start, end, total = (int(text) if text and text.isdigit() else None for text in match.groups())
    return start, end, total


def _network_error(url: str, why: str) -> EcgkerasError:
    return EcgkerasError(f"could not download {url} ({why}); {_MANUAL_HINT}")


def _reason(err: BaseException) -> str:
    """A short one-line description of an exception (the underlying reason of a URLError)."""
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        if isinstance(err.reason, BaseException):
            return _reason(err.reason)
        return " ".join(str(err.reason).split())
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(str(text).split())


def _zip_name(url: str) -> str:
    name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name or "ptbxl.zip"


# ------------------------------------------------------------------------------------ extract/verify

def _install(zip_path: Path, url: str, dest: Path, final: Path, *, progress: bool) -> None:
    """Extract `zip_path` into a temporary folder, verify it, mark it, and rename it to `final`."""
    tmp = dest / f".ptbxl.extracting-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    fix = f"the downloaded zip {zip_path} was deleted; run the download again to fetch it afresh"
    try:
        try:
            with zipfile.ZipFile(zip_path) as archive:
                _extract(archive, tmp, zip_path=zip_path, progress=progress)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError, EOFError,
                zlib.error) as err:
            raise EcgkerasError(f"{zip_path} is not a valid PTB-XL zip ({_reason(err)}); {fix}") from err
        count = _verify(tmp, progress=progress, where=f"the zip from {url}", fix=fix)
        (tmp / MARKER).write_text(f"url: {url}\nfiles verified: {count}\n"
                                  f"verified at: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n", encoding="utf-8")
        if final.is_dir():
            final.rmdir()  # empty (checked before downloading)
        os.replace(tmp, final)
    except EcgkerasError:  # the archive's contents are bad (not the disk): a retry must download afresh
        shutil.rmtree(tmp, ignore_errors=True)
        zip_path.unlink(missing_ok=True)
        raise
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EcgkerasError(f"cannot install PTB-XL into {final}: {_reason(err)}; free some disk space or "
                            f"choose another --dest, then run the download again (the zip {zip_path} "
                            "is kept)") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _extract(archive: zipfile.ZipFile, target: Path, *, zip_path: Path, progress: bool) -> None:
    """Safely extract every member into `target`, stripping a single shared top-level folder."""
    fix = f"the downloaded zip {zip_path} was deleted; run the download again to fetch it afresh"
    members = []
    for info in archive.infolist():
        name = info.filename
        parts = [p for p in re.split(r"[/\\]", name) if p not in ("", ".")]
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
            raise EcgkerasError(f"{zip_path} holds an unsafe member {name!r} (absolute path or '..'); "
                                f"refusing to extract it; {fix}")
        if parts:
            members.append((info, parts))
    tops = {parts[0] for _info, parts in members}
    strip = len(tops) == 1 and all(len(parts) > 1 or info.is_dir() for info, parts in members)

    needed = sum(info.file_size for info, _parts in members)
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if needed > free:
        raise OSError(f"extracting needs {needed / 1e9:.1f} GB but only {free / 1e9:.1f} GB is free")

    target.mkdir()
    with tqdm(total=needed, unit="B", unit_scale=True, unit_divisor=1024, desc="extracting",
              disable=not progress, leave=False) as bar:
        for info, parts in members:
            rel = parts[1:] if strip else parts
            if not rel:
                continue
            path = target.joinpath(*rel)
            if info.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(path, "wb") as out:
                shutil.copyfileobj(source, out, _HASH_CHUNK)
            bar.update(info.file_size)


def _verify(folder: Path, *, progress: bool, where: str, fix: str) -> int:
    """Hash every file listed in `folder/SHA256SUMS.txt`; raise naming the first bad one."""
    sums = folder / SUMS_FILE
    if not sums.is_file():
        raise EcgkerasError(f"{where} has no {SUMS_FILE}, so it cannot be verified (is it PTB-XL 1.0.3?); {fix}")
    entries: list[tuple[str, str]] = []
    for number, line in enumerate(sums.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        match = _SUMS_LINE.match(line.rstrip("\r"))
        if not match:
            raise EcgkerasError(f"line {number} of {SUMS_FILE} in {where} is not '<sha256>  <path>': "
                                f"{line[:80]!r}; {fix}")
        digest, rel = match.group(1).lower(), match.group(2)
        parts = PurePosixPath(rel).parts
        if rel.startswith("/") or ".." in parts or not parts:
            raise EcgkerasError(f"{SUMS_FILE} in {where} lists an unsafe path {rel!r}; {fix}")
        entries.append((digest, rel))
    if not entries:
        raise EcgkerasError(f"{SUMS_FILE} in {where} lists no files; {fix}")

    for digest, rel in tqdm(entries, desc="verifying", unit="file", disable=not progress, leave=False):
        path = folder.joinpath(*PurePosixPath(rel).parts)
        if not path.is_file():
            raise EcgkerasError(f"{rel} is listed in {SUMS_FILE} but missing from {where}; {fix}")
        if _sha256(path) != digest:
            raise EcgkerasError(f"SHA-256 mismatch for {rel} in {where}; {fix}")
    return len(entries)


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


# ------------------------------------------------------------------------------------------- helpers

def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # fails (harmlessly) unless empty
    except OSError:
        pass


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _remove_stale_extractions(dest: Path) -> None:
    """Remove `.ptbxl.extracting-<pid>` folders left by runs that were killed (POSIX: pid not alive)."""
    for folder in dest.glob(".ptbxl.extracting-*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if pid.isdigit() and (int(pid) == os.getpid() or not _pid_alive(int(pid))):
            shutil.rmtree(folder, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # no cheap, safe check (os.kill(pid, 0) would terminate it on Windows): keep it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
