"""No command destroys what it did not make: reports, summaries and published summaries replace only
folders ecgkeras made, are staged and swapped in whole, and a failed or interrupted command keeps the old."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_reporting import write_run
from test_site import TINY

from ecgkeras import EcgkerasError, cli
from ecgkeras.cli import build_parser, main
from ecgkeras.files import FOLDER_MARKER, check_replaceable, replaced_folder
from ecgkeras.report.aggregate import PUBLISHED_SUFFIXES, publish_summary, run_study
from ecgkeras.report.site import write_site
from ecgkeras.report.summary import write_summary
from ecgkeras.runs import find_runs
from ecgkeras.study import demo as demo_study
from ecgkeras.study.layout import PUBLISHED_KIND, REPORT_KIND, SUMMARY_KIND

ROOT = Path(__file__).resolve().parents[1]
TINY_ARGS = [arg for name, value in TINY.items() for arg in ("-p", name, json.dumps(value))]


def run_cli(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return exit_info.value.code, err


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) with its bytes."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def mark(folder: Path, kind: str) -> Path:
    """A folder as ecgkeras leaves it: some files and its marker."""
    folder.mkdir(parents=True)
    (folder / "index.html").write_text("old\n")
    (folder / FOLDER_MARKER).write_text(json.dumps({"kind": kind, "entries": ["index.html"]}))
    return folder


@pytest.fixture(scope="module")
def fake_study(tmp_path_factory) -> Path:
    """Two complete fake runs (no training) and their summary, written by `write_summary`."""
    root = tmp_path_factory.mktemp("fake")
    (root / "data").mkdir()
    for arch in ("cnn", "cnn-lstm"):
        write_run(root / "study" / arch / "seed-0", arch, 0, root / "data")
    write_summary(root / "study", bootstrap_resamples=10)
    return root / "study"


@pytest.fixture
def study_copy(fake_study, tmp_path) -> Path:
    copy = tmp_path / "study"
    shutil.copytree(fake_study, copy)
    return copy


# --------------------------------------------------------------------------- the mechanism


def test_a_folder_is_replaced_whole_keeping_the_umask_and_what_ecgkeras_did_not_write(tmp_path):
    target = tmp_path / "site"
    previous = os.umask(0o027)
    try:
        with replaced_folder(target, "report") as staging:
            (staging / "a.html").write_text("first")
    finally:
        os.umask(previous)
    assert (target.stat().st_mode & 0o777) == 0o750 and json.loads((target / FOLDER_MARKER).read_text()) == {
        "kind": "report", "entries": ["a.html"]}
    (target / "my-notes.txt").write_text("mine")
    with replaced_folder(target, "report") as staging:
        (staging / "b.html").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == [FOLDER_MARKER, "b.html", "my-notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # no staging or previous folder left


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_a_failed_or_interrupted_replacement_leaves_the_target_as_it_was(tmp_path, failure):
    target = mark(tmp_path / "site", "report")
    before = listing(target)
    with pytest.raises(failure):
        with replaced_folder(target, "report") as staging:
            (staging / "half.html").write_text("half")
            raise failure()
    assert listing(target) == before and sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_an_interruption_between_the_two_renames_brings_the_old_folder_back(tmp_path, monkeypatch):
    target = mark(tmp_path / "site", "report")
    before = listing(target)
    real_replace = os.replace

    def interrupted(src, dst):
        if ".staging-" in str(src):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with replaced_folder(target, "report") as staging:
            (staging / "new.html").write_text("new")
    assert listing(target) == before and sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_two_concurrent_replacements_take_turns_and_one_whole_result_remains(tmp_path):
    target, both_built, errors = tmp_path / "summary", threading.Barrier(2), []

    def replace(name: str) -> None:
        try:
            with replaced_folder(target, "summary") as staging:
                for k in range(20):
                    (staging / f"{k}.csv").write_text(name)
                both_built.wait(timeout=10)
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=replace, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors and len({path.read_text() for path in target.glob("*.csv")}) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary"]


def test_only_a_missing_empty_or_same_kind_folder_is_replaceable(tmp_path):
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "missing", "report", "--out")
    check_replaceable(tmp_path / "empty", "report", "--out")
    check_replaceable(mark(tmp_path / "report", "report"), "report", "--out")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("mine")
    (tmp_path / "file").write_text("a file")
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    for name, message in (("mine", "no .ecgkeras marker"), ("file", "not a folder"), ("broken", "broken link")):
        with pytest.raises(EcgkerasError, match=f"{message}.*choose an empty or new folder with --out"):
            check_replaceable(tmp_path / name, "report", "--out")
    with pytest.raises(EcgkerasError, match="is a summary folder, not a report folder"):
        check_replaceable(mark(tmp_path / "summary", "summary"), "report", "--out")


def test_a_read_only_parent_is_a_one_line_error(read_only_dir):
    with pytest.raises(EcgkerasError, match="cannot write .*choose a writable folder with --out"):
        with replaced_folder(read_only_dir / "site", "report", "--out"):
            pass


# --------------------------------------------------------------------------- report --out


@pytest.mark.parametrize("where", ["the study", "its summary", "a user's folder", "a file", "another summary",
                                   "a link to a user's folder"])
def test_report_never_replaces_what_it_did_not_make(study_copy, tmp_path, capsys, where):
    mine = tmp_path / "mydocs"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (tmp_path / "notes.txt").write_text("notes")
    other = mark(tmp_path / "other" / "summary", SUMMARY_KIND)
    (tmp_path / "link").symlink_to(mine)
    out = {"the study": study_copy, "its summary": study_copy / "summary", "a user's folder": mine,
           "a file": tmp_path / "notes.txt", "another summary": other, "a link to a user's folder": tmp_path / "link"}
    before = listing(tmp_path)
    code, err = run_cli(["report", study_copy, "--out", out[where]], capsys)
    assert code == 2 and "--out" in err and listing(tmp_path) == before


def test_report_replaces_its_own_report_and_keeps_a_users_notes_in_it(study_copy, capsys):
    main(["report", str(study_copy)])
    report = study_copy / "report"
    (report / "my-notes.txt").write_text("mine")
    (report / "index.html").write_text("stale")
    main(["report", str(study_copy)])
    assert "Study report" in (report / "index.html").read_text() and (report / "my-notes.txt").read_text() == "mine"
    assert json.loads((report / FOLDER_MARKER).read_text())["kind"] == REPORT_KIND
    assert sorted(p.name for p in study_copy.iterdir()) == ["cnn", "cnn-lstm", "report", "summary"]


def test_report_without_a_study_file_works_and_an_empty_history_is_one_line(study_copy, capsys):
    assert not (study_copy / "study.json").exists()  # fake studies have none: the report needs only the runs
    assert write_site(study_copy).is_file()
    before = listing(study_copy)
    (study_copy / "cnn" / "seed-0" / "history.csv").write_text("")
    code, err = run_cli(["report", study_copy], capsys)
    assert code == 2 and "history.csv" in err and "rerun this run" in err
    (study_copy / "cnn" / "seed-0" / "history.csv").write_text(before["cnn/seed-0/history.csv"].decode())
    assert listing(study_copy) == before


# --------------------------------------------------------------------------- aggregate, before any kernel


def test_aggregate_refuses_a_negative_bootstrap_with_the_schemas_range(study_copy, capsys):
    before = listing(study_copy)
    code, err = run_cli(["aggregate", study_copy, "--bootstrap-resamples", "-5"], capsys)
    assert code == 2 and err == "ecgkeras: error: --bootstrap-resamples -5: must be >= 0"
    assert listing(study_copy) == before


@pytest.mark.parametrize("where", ["the study", "a run folder", "the report", "a published summary",
                                   "a user's folder"])
def test_aggregate_refuses_a_summary_dir_it_did_not_make(study_copy, tmp_path, capsys, where):
    write_site(study_copy)
    mine = tmp_path / "mydocs"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    published = mark(tmp_path / "published", PUBLISHED_KIND)
    target = {"the study": study_copy, "a run folder": study_copy / "cnn" / "seed-0", "the report": study_copy / "report",
              "a published summary": published, "a user's folder": mine}[where]
    before = listing(tmp_path)
    code, err = run_cli(["aggregate", study_copy, "--summary-dir", target], capsys)
    assert code == 2 and "--summary-dir" in err and listing(tmp_path) == before


def test_a_study_refuses_an_unmarked_report_folder_before_training(synthetic_ptbxl, tmp_path):
    report = tmp_path / "study" / "report"
    report.mkdir(parents=True)
    (report / "slides.pdf").write_text("mine")
    with pytest.raises(EcgkerasError, match="report .*no .ecgkeras marker"):
        run_study(synthetic_ptbxl, tmp_path / "study", architectures=["cnn"], parameters=TINY)
    assert sorted(p.name for p in (tmp_path / "study").iterdir()) == ["report"]


# --------------------------------------------------------------------------- study --demo --publish


@pytest.mark.parametrize("extra, message", [
    (["--epochs", "1"], "differs in epochs 1"), (["--architectures", "cnn"], "differs in --architectures"),
    (["--seeds", "0", "1"], "differs in --seeds"), (["-p", "learning_rate", "0.1"], "differs in learning_rate"),
    (["--allow-mixed"], "differs in --allow-mixed")])
def test_publish_refuses_anything_but_the_demos_own_study_before_anything_is_made(tmp_path, capsys, extra, message):
    published = ROOT / "results" / "demo-synthetic"
    before = listing(published)
    code, err = run_cli(["study", "--demo", "--out", tmp_path / "study", "--publish", published, *extra], capsys)
    assert code == 2 and message in err and "--publish" in err
    assert listing(published) == before and not (tmp_path / "study").exists()


def test_publish_refuses_a_non_demo_study_a_users_folder_and_a_study_with_other_runs(study_copy, tmp_path, capsys):
    write_run(study_copy / "cnn" / "seed-1", "cnn", 1, tmp_path / "data")  # seed 1: not in the demo's grid
    mine = tmp_path / "mydocs"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    before = listing(tmp_path)
    for args, message in (
            (["--data-dir", tmp_path, "--out", tmp_path / "s", "--publish", tmp_path / "p"], "only the demo study is published"),
            (["--demo", "--out", tmp_path / "s", "--publish", mine], "no .ecgkeras marker"),
            (["--demo", "--out", study_copy, "--publish", tmp_path / "p"], "runs outside the demo's grid")):
        code, err = run_cli(["study", *args], capsys)
        assert code == 2 and message in err
    assert listing(tmp_path) == before


def test_the_committed_demo_summary_is_marked_and_the_makefiles_demo_may_publish_it(tmp_path, monkeypatch):
    published = ROOT / "results" / "demo-synthetic"
    marker = json.loads((published / FOLDER_MARKER).read_text())
    assert marker["kind"] == PUBLISHED_KIND
    assert marker["entries"] == sorted(p.name for p in published.iterdir() if p.name != FOLDER_MARKER)
    assert {Path(name).suffix for name in marker["entries"]} <= PUBLISHED_SUFFIXES
    command = re.search(r"^demo:.*\n\t\$\(BIN\)/ecgkeras (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert command == "study --demo --publish results/demo-synthetic"
    shutil.copytree(published, tmp_path / "results" / "demo-synthetic")
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(command.split())
    demo_study.check_publish(cli._study_request(args))  # accepted


# --------------------------------------------------------------------------- with a trained study


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """`ecgkeras study --demo` with one tiny architecture (and fewer synthetic records), run in an empty folder."""
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        patch.setattr(demo_study, "DEMO_RECORDS", 300)
        main(["study", "--demo", "--out", "tiny-demo", "--architectures", "cnn", *TINY_ARGS])
    return cwd


@pytest.mark.slow
def test_the_demo_stays_inside_its_study_folder_and_nothing_trips_over_its_data(demo, capsys):
    assert sorted(p.name for p in demo.iterdir()) == ["tiny-demo"]  # no data/, results/ or runs/ beside it
    study = demo / "tiny-demo"
    assert (study / demo_study.DEMO_DATA / "ptbxl_database.csv").is_file()
    assert [run.run_dir for run in find_runs(study)] == [study / "cnn" / "seed-0"]
    main(["status", str(study)])
    assert capsys.readouterr().out.splitlines()[0].split() == ["cnn/seed-0", "complete"]
    for folder, kind in (("summary", SUMMARY_KIND), ("report", REPORT_KIND)):
        assert json.loads((study / folder / FOLDER_MARKER).read_text())["kind"] == kind
    notebooks = sorted(p.name for p in (study / "report" / "notebooks").iterdir())
    assert notebooks == ["cnn-seed-0-02_train_architecture.html", "summary-03_aggregate_results.html"]
    executed = (study / "summary" / "03_aggregate_results.ipynb").read_text()
    assert ".staging-" not in executed and str((study / "summary").resolve()) in executed


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
    code, err = run_cli(["aggregate", demo_copy, "--bootstrap-resamples", "10"], capsys)
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
                                "10"], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
