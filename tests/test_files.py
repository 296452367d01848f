"""ecgkeras.files: folders are replaced whole, keeping the umask and what ecgkeras did not write;
a failed or interrupted replacement keeps the old folder."""

from __future__ import annotations

import json
import os
import threading

import pytest
from helpers import listing, mark

from ecgkeras import EcgkerasError
from ecgkeras.files import FOLDER_MARKER, check_replaceable, replaced_folder


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
