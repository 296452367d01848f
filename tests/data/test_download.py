"""ecgkeras.data.download: download_ptbxl against a real HTTP server on 127.0.0.1: full, interrupted/resumed,
corrupt, unsafe."""

from __future__ import annotations

import hashlib
import os
import random
import re
import socket
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ecgkeras.data.download import MARKER, download_ptbxl, verify_checksums
from ecgkeras.errors import EcgkerasError


TOP = "ptb-xl-a-large-publicly-available-electrocardiography-dataset-1.0.3"


ZIP_NAME = f"{TOP}.zip"


DAT = "records100/00000/00001_lr.dat"


def dataset_files() -> dict[str, bytes]:
    """A tiny PTB-XL-shaped dataset: csv tables and one WFDB record (random, incompressible signal bytes)."""
    rng = random.Random(3)
    return {
        "ptbxl_database.csv": b"ecg_id,patient_id,scp_codes,strat_fold,filename_lr,filename_hr\n"
                              b"1,15709.0,\"{'NORM': 100.0}\",3,records100/00000/00001_lr,"
                              b"records500/00000/00001_hr\n",
        "scp_statements.csv": b",description,diagnostic,diagnostic_class\nNORM,normal ECG,1.0,NORM\n",
        "records100/00000/00001_lr.hea": b"00001_lr 12 100 1000\n",
        DAT: bytes(rng.getrandbits(8) for _ in range(40_000)),
        "records500/00000/00001_hr.hea": b"00001_hr 12 500 5000\n",
    }


def make_zip(path: Path, files: dict[str, bytes], *, top: str = TOP, sums: bool = True,
             bad_hash_for: str | None = None, extra: dict[str, bytes] | None = None) -> Path:
    """Write a PTB-XL-layout zip (single top folder, SHA256SUMS.txt in sha256sum format)."""
    prefix = f"{top}/" if top else ""
    lines = []
    for rel, data in files.items():
        digest = hashlib.sha256(data).hexdigest()
        if rel == bad_hash_for:
            digest = hashlib.sha256(data + b"tampered").hexdigest()
        lines.append(f"{digest}  {rel}\n")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        if top:
            archive.writestr(zipfile.ZipInfo(prefix), b"")  # directory entry, like the real zip
        for rel, data in files.items():
            archive.writestr(prefix + rel, data)
        if sums:
            archive.writestr(prefix + "SHA256SUMS.txt", "".join(lines))
        for name, data in (extra or {}).items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return path


class ServerState:
    """What the test server serves and what it saw."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut_after: int | None = None  # the next response is cut after this many body bytes
        self.ignore_range = False
        self.wrong_start = False  # answer a Range request with 206 from byte 0 (not what was asked)
        self.stall_after: int | None = None  # the next response stalls (1 s) after this many body bytes
        self.base = ""

    def serve(self, path: Path, name: str = ZIP_NAME) -> str:
        self.files[f"/{name}"] = path.read_bytes()
        return f"{self.base}/{name}"

    @property
    def ranges(self) -> list[str | None]:
        return [rng for _path, rng in self.requests]


class RangeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        state: ServerState = self.server.state
        rng = self.headers.get("Range")
        state.requests.append((self.path, rng))
        data = state.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start, status = 0, 200
        if rng and not state.ignore_range:
            start = 0 if state.wrong_start else int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        cut, state.cut_after = state.cut_after, None
        stall, state.stall_after = state.stall_after, None
        if stall is not None:  # simulate a server that stops sending (the client times out)
            self.wfile.write(body[:stall])
            self.wfile.flush()
            time.sleep(1.0)
            self.close_connection = True
            return
        if cut is not None:  # simulate a dropped connection
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.state = ServerState()
    httpd.state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd.state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def files() -> dict[str, bytes]:
    return dataset_files()


@pytest.fixture
def ptbxl_zip(tmp_path, files) -> Path:
    return make_zip(tmp_path / ZIP_NAME, files)


def assert_installed(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        assert (folder / rel).read_bytes() == data, rel
    assert (folder / "SHA256SUMS.txt").is_file()
    assert (folder / MARKER).is_file()


def assert_no_leftovers(dest: Path, *, part_allowed: bool = False) -> None:
    assert not list(dest.glob(".ptbxl.extracting-*"))
    if not part_allowed:
        assert not list(dest.rglob("*.part"))


def test_full_download(server, ptbxl_zip, files, tmp_path):
    dest = tmp_path / "dest"
    folder = download_ptbxl(dest, server.serve(ptbxl_zip), progress=True, chunk_size=4096)
    assert folder == dest / "ptbxl"
    assert_installed(folder, files)
    assert_no_leftovers(dest)
    assert not (dest / ".downloads").exists()  # zip deleted, empty folder removed
    assert server.ranges == [None]
    assert verify_checksums(folder) == len(files)


def test_keep_zip_and_flat_zip(server, files, tmp_path):
    flat = make_zip(tmp_path / "flat.zip", files, top="")  # no top folder: extracted as is
    dest = tmp_path / "dest"
    folder = download_ptbxl(dest, server.serve(flat, "flat.zip"), progress=False, keep_zip=True)
    assert_installed(folder, files)
    assert (dest / ".downloads" / "flat.zip").read_bytes() == flat.read_bytes()


def test_interrupted_download_resumes(server, ptbxl_zip, files, tmp_path):
    dest, cut = tmp_path / "dest", 10_000
    url = server.serve(ptbxl_zip)
    server.cut_after = cut
    with pytest.raises(EcgkerasError, match="interrupted") as info:
        download_ptbxl(dest, url, progress=False, chunk_size=1024)
    assert url in str(info.value) and "\n" not in str(info.value)
    part = dest / ".downloads" / f"{ZIP_NAME}.part"
    assert part.stat().st_size == cut
    assert part.read_bytes() == ptbxl_zip.read_bytes()[:cut]
    assert not (dest / "ptbxl").exists()
    assert_no_leftovers(dest, part_allowed=True)

    folder = download_ptbxl(dest, url, progress=False, chunk_size=1024)
    assert server.ranges == [None, f"bytes={cut}-"]
    assert_installed(folder, files)
    assert_no_leftovers(dest)


def test_server_ignoring_range_restarts_from_zero(server, ptbxl_zip, files, tmp_path):
    dest = tmp_path / "dest"
    (dest / ".downloads").mkdir(parents=True)
    (dest / ".downloads" / f"{ZIP_NAME}.part").write_bytes(b"junk" * 1000)  # appending would corrupt it
    server.ignore_range = True
    folder = download_ptbxl(dest, server.serve(ptbxl_zip), progress=False)
    assert server.ranges == ["bytes=4000-"]
    assert_installed(folder, files)
    assert_no_leftovers(dest)


def test_wrong_206_start_restarts_from_zero(server, ptbxl_zip, files, tmp_path):
    dest = tmp_path / "dest"
    (dest / ".downloads").mkdir(parents=True)
    (dest / ".downloads" / f"{ZIP_NAME}.part").write_bytes(b"junk" * 1000)
    server.wrong_start = True
    folder = download_ptbxl(dest, server.serve(ptbxl_zip), progress=False)
    assert server.ranges == ["bytes=4000-", None]
    assert_installed(folder, files)


def test_stalled_server_times_out_then_resumes(server, ptbxl_zip, files, tmp_path):
    dest, stall = tmp_path / "dest", 5_000
    url = server.serve(ptbxl_zip)
    server.stall_after = stall
    with pytest.raises(EcgkerasError, match="interrupted"):
        download_ptbxl(dest, url, progress=False, timeout=0.3, chunk_size=1024)
    part = dest / ".downloads" / f"{ZIP_NAME}.part"
    assert part.read_bytes() == ptbxl_zip.read_bytes()[:stall]  # nothing received was lost
    folder = download_ptbxl(dest, url, progress=False)
    assert server.ranges == [None, f"bytes={stall}-"]
    assert_installed(folder, files)


def test_complete_part_answered_416(server, ptbxl_zip, files, tmp_path):
    dest = tmp_path / "dest"
    (dest / ".downloads").mkdir(parents=True)
    (dest / ".downloads" / f"{ZIP_NAME}.part").write_bytes(ptbxl_zip.read_bytes())
    folder = download_ptbxl(dest, server.serve(ptbxl_zip), progress=False)
    assert server.ranges == [f"bytes={ptbxl_zip.stat().st_size}-"]
    assert_installed(folder, files)


def test_oversized_part_answered_416_restarts(server, ptbxl_zip, files, tmp_path):
    dest = tmp_path / "dest"
    (dest / ".downloads").mkdir(parents=True)
    size = ptbxl_zip.stat().st_size
    (dest / ".downloads" / f"{ZIP_NAME}.part").write_bytes(b"x" * (size + 10))
    folder = download_ptbxl(dest, server.serve(ptbxl_zip), progress=False)
    assert server.ranges == [f"bytes={size + 10}-", None]
    assert_installed(folder, files)


def test_checksum_mismatch(server, files, tmp_path):
    bad = make_zip(tmp_path / ZIP_NAME, files, bad_hash_for=DAT)
    dest = tmp_path / "dest"
    with pytest.raises(EcgkerasError, match="mismatch") as info:
        download_ptbxl(dest, server.serve(bad), progress=False)
    message = str(info.value)
    assert DAT in message and "run the download again" in message and "\n" not in message
    assert not (dest / "ptbxl").exists()
    assert_no_leftovers(dest)
    assert not list((dest / ".downloads").glob("*.zip"))  # deleted, so a retry downloads afresh


def test_zip_without_checksums_is_rejected(server, files, tmp_path):
    bare = make_zip(tmp_path / ZIP_NAME, files, sums=False)
    dest = tmp_path / "dest"
    with pytest.raises(EcgkerasError, match="SHA256SUMS.txt"):
        download_ptbxl(dest, server.serve(bare), progress=False)
    assert not (dest / "ptbxl").exists()
    assert_no_leftovers(dest)


def test_completed_dest_makes_no_request(server, ptbxl_zip, files, tmp_path):
    dest = tmp_path / "dest"
    url = server.serve(ptbxl_zip)
    first = download_ptbxl(dest, url, progress=False)
    server.requests.clear()
    assert download_ptbxl(dest, url, progress=False) == first
    assert download_ptbxl(dest, "http://127.0.0.1:9/unreachable.zip", progress=False) == first
    assert server.requests == []


def test_unverified_existing_folder_is_not_overwritten(server, ptbxl_zip, tmp_path):
    dest = tmp_path / "dest"
    (dest / "ptbxl").mkdir(parents=True)
    (dest / "ptbxl" / "mine.txt").write_text("user data")
    with pytest.raises(EcgkerasError, match="not a verified"):
        download_ptbxl(dest, server.serve(ptbxl_zip), progress=False)
    assert server.requests == []
    assert (dest / "ptbxl" / "mine.txt").read_text() == "user data"


def test_http_404(server, tmp_path):
    url = f"{server.base}/no-such.zip"
    with pytest.raises(EcgkerasError, match="404") as info:
        download_ptbxl(tmp_path / "dest", url, progress=False)
    message = str(info.value)
    assert url in message and "physionet.org/content/ptb-xl/1.0.3" in message and "--data-dir" in message
    assert not list((tmp_path / "dest").rglob("*.part"))


def test_connection_refused(tmp_path):
    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ptbxl.zip"
    with pytest.raises(EcgkerasError, match="could not download") as info:
        download_ptbxl(tmp_path / "dest", url, progress=False, timeout=5)
    assert url in str(info.value)
    assert not (tmp_path / "dest" / ".downloads").exists()


def test_non_http_url_rejected(tmp_path):
    with pytest.raises(EcgkerasError, match="not an http"):
        download_ptbxl(tmp_path / "dest", "ftp://example.org/ptbxl.zip", progress=False)


@pytest.mark.parametrize("member", ["../evil.txt", f"{TOP}/../../evil.txt", "/tmp/ecgkeras-evil.txt"])
def test_path_traversal_member_rejected(server, files, tmp_path, member):
    evil = make_zip(tmp_path / ZIP_NAME, files, extra={member: b"pwned"})
    assert member in zipfile.ZipFile(evil).namelist()  # the unsafe name really is in the archive
    dest = tmp_path / "a" / "dest"
    with pytest.raises(EcgkerasError, match="unsafe") as info:
        download_ptbxl(dest, server.serve(evil), progress=False)
    assert member in str(info.value)
    assert not (dest / "ptbxl").exists()
    assert_no_leftovers(dest)
    assert not list(tmp_path.rglob("evil.txt"))
    assert not Path("/tmp/ecgkeras-evil.txt").exists()


def test_verify_checksums_on_manual_copy(files, tmp_path):
    folder = tmp_path / "manual"
    with zipfile.ZipFile(make_zip(tmp_path / "m.zip", files, top="")) as archive:
        archive.extractall(folder)
    assert verify_checksums(folder) == len(files)
    (folder / DAT).write_bytes(b"corrupted")
    with pytest.raises(EcgkerasError, match=re.escape(DAT)):
        verify_checksums(folder)
    os.remove(folder / DAT)
    with pytest.raises(EcgkerasError, match="missing"):
        verify_checksums(folder)
    with pytest.raises(EcgkerasError, match="no SHA256SUMS.txt"):
        verify_checksums(tmp_path)
