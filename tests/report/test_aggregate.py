"""ecgkeras.report.aggregate: a study's summary, made in a kernel, and its publication; a failed
or interrupted aggregation keeps the old summary and report."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, interruptible, listing, mark, run_cli_one_line

from ecgkeras import EcgkerasError
from ecgkeras.files import FOLDER_MARKER
from ecgkeras.report.aggregate import PUBLISHED_SUFFIXES, publish_summary
from ecgkeras.report.site import write_site
from ecgkeras.study.layout import PUBLISHED_KIND


@pytest.mark.slow
def test_study_writes_the_summary_with_tables_and_figures(tiny_study_and_result):
    out, result = tiny_study_and_result
    summary = result.summary_dir
    assert summary == out / "summary"
    for name in ("results_tuned.md", "results_tuned.csv", "results_tuned.tex", "results_fixed.md",
                 "recall_heatmap.png", "recall_heatmap.pdf", "recall_bars.png", "complexity.png",
                 "paired_comparison.csv", "03_aggregate_results.ipynb"):
        assert (summary / name).is_file(), name
    assert "CNN-GRU" in (summary / "results_tuned.md").read_text()


def test_aggregate_refuses_a_negative_bootstrap_with_the_schemas_range(fake_study_copy, capsys):
    before = listing(fake_study_copy)
    code, err = run_cli_one_line(["aggregate", fake_study_copy, "--bootstrap-resamples", "-5"], capsys)
    assert code == 2 and err == "ecgkeras: error: --bootstrap-resamples -5: must be >= 0"
    assert listing(fake_study_copy) == before


@pytest.mark.parametrize("where", ["the study", "a run folder", "the report", "a published summary",
                                   "a user's folder"])
def test_aggregate_refuses_a_summary_dir_it_did_not_make(fake_study_copy, tmp_path, capsys, where):
    write_site(fake_study_copy)
    mine = tmp_path / "mydocs"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    published = mark(tmp_path / "published", PUBLISHED_KIND)
    target = {"the study": fake_study_copy, "a run folder": fake_study_copy / "cnn" / "seed-0", "the report": fake_study_copy / "report",
              "a published summary": published, "a user's folder": mine}[where]
    before = listing(tmp_path)
    code, err = run_cli_one_line(["aggregate", fake_study_copy, "--summary-dir", target], capsys)
    assert code == 2 and "--summary-dir" in err and listing(tmp_path) == before


@pytest.mark.slow
def test_publishing_replaces_only_a_published_summary_whole(demo, tmp_path):
    summary = demo / "tiny-demo" / "summary"
    target = publish_summary(summary, tmp_path / "published")
    expected = sorted(p.name for p in summary.iterdir() if p.suffix in PUBLISHED_SUFFIXES)
    assert sorted(p.name for p in target.iterdir() if p.name != FOLDER_MARKER) == expected
    (target / "results_tuned.md").write_text("stale")
    (target / "my-notes.txt").write_text("mine")
    publish_summary(summary, target)
    assert (target / "results_tuned.md").read_bytes() == (summary / "results_tuned.md").read_bytes()
    assert (target / "my-notes.txt").read_text() == "mine"
    with pytest.raises(EcgkerasError, match="--publish"):
        publish_summary(summary, summary)


@pytest.fixture
def demo_copy(demo, tmp_path) -> Path:
    copy = tmp_path / "study"
    shutil.copytree(demo / "tiny-demo", copy, ignore=shutil.ignore_patterns("synthetic-ptbxl"))
    return copy


@pytest.mark.slow
def test_a_failed_aggregation_keeps_the_summary_and_report_and_says_which_file(demo_copy, capsys):
    before = listing(demo_copy)
    (demo_copy / "cnn" / "seed-0" / "predictions.npz").write_bytes(b"garbage")
    code, err = run_cli_one_line(["aggregate", demo_copy, "--bootstrap-resamples", "10"], capsys)
    assert code == 2 and "predictions.npz" in err and "previous summary and report are kept" in err
    changed = {name for name in set(before) | set(listing(demo_copy)) if before.get(name) != listing(demo_copy).get(name)}
    assert changed == {"cnn/seed-0/predictions.npz"}


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(child) for child in found]


@pytest.mark.slow
def test_ctrl_c_during_aggregation_keeps_everything_and_says_one_line(demo_copy):
    before = listing(demo_copy)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "ecgkeras", "aggregate", str(demo_copy), "--bootstrap-resamples",
                                "10"], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=interruptible)
    deadline = time.monotonic() + 120
    while not list(demo_copy.glob(".summary.staging-*/*.ipynb")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # the kernel is executing the notebook
    assert process.poll() is None, process.communicate()
    kernels = _children(process.pid)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.strip().splitlines() == [err.strip()] and err.startswith("ecgkeras: interrupted"), err
    assert listing(demo_copy) == before and not [p for p in demo_copy.iterdir() if p.name.startswith(".")]
    time.sleep(1)
    assert not [pid for pid in kernels if Path(f"/proc/{pid}").exists()]
