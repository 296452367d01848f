"""`ecgkeras report`: a study's static HTML site; every link resolves and a real browser renders it."""

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ecgkeras import EcgkerasError
from ecgkeras.cli import main
from ecgkeras.report.aggregate import run_study
from ecgkeras.report.site import markdown_to_html, write_site

TINY = {"epochs": 1, "batch_size": 32, "bootstrap_resamples": 10, "filters": [8, 8, 16, 16],
        "rnn_units": 8, "head_units": 16}
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


@pytest.fixture(scope="module")
def study(synthetic_ptbxl, tmp_path_factory):
    """A two-architecture study on the synthetic data; `ecgkeras study` writes its report."""
    out = tmp_path_factory.mktemp("study") / "demo"
    run_study(synthetic_ptbxl, out, architectures=["cnn", "cnn-gru"], parameters=TINY)
    return out


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt when missing (the test machine is fresh and we are root)."""
    if not shutil.which("chromium"):
        if os.geteuid() != 0:
            pytest.fail("chromium is missing and installing it needs root: apt-get install chromium")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, capture_output=True)
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


def test_every_link_and_image_of_the_report_resolves(study):
    site = study / "report"
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


def test_the_index_renders_in_headless_chromium(study, chromium, tmp_path):
    index = (study / "report" / "index.html").resolve()
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


def test_report_cli_and_its_errors(study, tmp_path, capsys):
    main(["report", str(study), "--out", str(tmp_path / "site")])
    assert "index.html" in capsys.readouterr().out and (tmp_path / "site" / "index.html").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(empty)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "no complete run" in error and len(error.splitlines()) == 1
    shutil.copytree(study / "cnn", tmp_path / "unaggregated" / "cnn")
    with pytest.raises(EcgkerasError, match="aggregate"):
        write_site(tmp_path / "unaggregated")


def test_markdown_is_escaped_before_it_becomes_html():
    html = markdown_to_html("# Title\n\n| a | b |\n|:--|--:|\n| <script>alert(1)</script> | **0.9** |\n\n> note")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<td class=num><strong>0.9</strong></td>" in html and "<blockquote>note</blockquote>" in html
