"""ecgkeras.report.site: `ecgkeras report`: a study's static HTML site; every link resolves and a real browser
renders it; it replaces only a report folder it made, whole."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from helpers import listing, mark, run_cli_one_line
from system_packages import ensure

from ecgkeras import EcgkerasError
from ecgkeras.cli import main
from ecgkeras.files import FOLDER_MARKER
from ecgkeras.report.site import markdown_to_html, write_site
from ecgkeras.study.layout import REPORT_KIND, SUMMARY_KIND


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium and the fonts it renders with (tests/system_packages.py installs them when missing)."""
    try:
        ensure("chromium")
    except RuntimeError as error:
        pytest.fail(str(error))
    return shutil.which("chromium")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("href", "src") and value]


def _links(page: Path) -> list[str]:
    parser = _Links()
    parser.feed(page.read_text())
    return parser.links


@pytest.mark.slow
def test_every_link_and_image_of_the_report_resolves(tiny_study):
    site = tiny_study / "report"
    index = site / "index.html"
    assert index.is_file()
    pages = sorted(site.rglob("*.html"))
    run_pages = [p for p in pages if p.name.startswith("run-")]
    notebooks = [p for p in pages if p.parent.name == "notebooks"]
    assert len(run_pages) == 2 and len(notebooks) == 3  # two training runs and the aggregation
    own = [index, *run_pages]
    for page in pages:
        for link in _links(page):
            if link.startswith(("http://", "https://")):
                assert page not in own, f"{page.name} links outside the site: {link}"
                continue
            if link.startswith("data:"):  # nbconvert embeds the notebooks' figures
                continue
            target = link.split("#")[0]
            if target:
                assert (page.parent / target).resolve().is_file(), f"{page.name}: {link[:80]} does not resolve"
    index_links = _links(index)
    for name in ("recall_heatmap.png", "complexity.png", "paired_comparison.png"):
        assert f"figures/{name}" in index_links
    assert {f"notebooks/{p.name}" for p in notebooks} <= set(index_links)
    text = index.read_text()
    assert "CNN-GRU" in text and "SYNTHETIC DATA" in text and "<strong>" in text  # bold best values
    run_page = next(p for p in run_pages if "cnn-gru" in p.name).read_text()
    for expected in ("Learning curve", "Per-class", "Configuration", "learning_rate", "[", "rnn_units"):
        assert expected in run_page


@pytest.mark.slow
def test_the_index_renders_in_headless_chromium(tiny_study, chromium, tmp_path):
    index = (tiny_study / "report" / "index.html").resolve()
    common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    screenshot = tmp_path / "index.png"
    subprocess.run([*common, f"--screenshot={screenshot}", "--window-size=1280,2400", index.as_uri()],
                   check=True, capture_output=True, timeout=120)
    dom = subprocess.run([*common, "--dump-dom", index.as_uri()], check=True, capture_output=True, text=True,
                         timeout=120).stdout
    assert "Study report" in dom and "CNN-GRU" in dom and "ERR_" not in dom
    with Image.open(screenshot) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.shape == (2400, 1280)
    assert pixels.std() > 20  # text, tables and figures, not a blank page
    assert (pixels < 128).mean() > 0.01  # a real amount of dark ink (an error page is mostly white)


@pytest.mark.slow
def test_report_cli_and_its_errors(tiny_study, tmp_path, capsys):
    main(["report", str(tiny_study), "--out", str(tmp_path / "site")])
    assert "index.html" in capsys.readouterr().out and (tmp_path / "site" / "index.html").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(empty)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "no complete run" in error and len(error.splitlines()) == 1
    shutil.copytree(tiny_study / "cnn", tmp_path / "unaggregated" / "cnn")
    with pytest.raises(EcgkerasError, match="aggregate"):
        write_site(tmp_path / "unaggregated")


def test_markdown_is_escaped_before_it_becomes_html():
    html = markdown_to_html("# Title\n\n| a | b |\n|:--|--:|\n| <script>alert(1)</script> | **0.9** |\n\n> note")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<td class=num><strong>0.9</strong></td>" in html and "<blockquote>note</blockquote>" in html


@pytest.mark.parametrize("where", ["the study", "its summary", "a user's folder", "a file", "another summary",
                                   "a link to a user's folder"])
def test_report_never_replaces_what_it_did_not_make(fake_study_copy, tmp_path, capsys, where):
    mine = tmp_path / "mydocs"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (tmp_path / "notes.txt").write_text("notes")
    other = mark(tmp_path / "other" / "summary", SUMMARY_KIND)
    (tmp_path / "link").symlink_to(mine)
    out = {"the study": fake_study_copy, "its summary": fake_study_copy / "summary", "a user's folder": mine,
           "a file": tmp_path / "notes.txt", "another summary": other, "a link to a user's folder": tmp_path / "link"}
    before = listing(tmp_path)
    code, err = run_cli_one_line(["report", fake_study_copy, "--out", out[where]], capsys)
    assert code == 2 and "--out" in err and listing(tmp_path) == before


def test_report_replaces_its_own_report_and_keeps_a_users_notes_in_it(fake_study_copy, capsys):
    main(["report", str(fake_study_copy)])
    report = fake_study_copy / "report"
    (report / "my-notes.txt").write_text("mine")
    (report / "index.html").write_text("stale")
    main(["report", str(fake_study_copy)])
    assert "Study report" in (report / "index.html").read_text() and (report / "my-notes.txt").read_text() == "mine"
    assert json.loads((report / FOLDER_MARKER).read_text())["kind"] == REPORT_KIND
    assert sorted(p.name for p in fake_study_copy.iterdir()) == ["cnn", "cnn-lstm", "report", "summary"]


def test_report_without_a_study_file_works_and_an_empty_history_is_one_line(fake_study_copy, capsys):
    assert not (fake_study_copy / "study.json").exists()  # fake studies have none: the report needs only the runs
    assert write_site(fake_study_copy).is_file()
    before = listing(fake_study_copy)
    (fake_study_copy / "cnn" / "seed-0" / "history.csv").write_text("")
    code, err = run_cli_one_line(["report", fake_study_copy], capsys)
    assert code == 2 and "history.csv" in err and "rerun this run" in err
    (fake_study_copy / "cnn" / "seed-0" / "history.csv").write_text(before["cnn/seed-0/history.csv"].decode())
    assert listing(fake_study_copy) == before
