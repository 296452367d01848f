"""ecgkeras.study.plan: every value is checked before anything is written, one planner for the
study and --list-runs, and a study folder keeps to one configuration, also when studies start at once."""

from __future__ import annotations

import json

import pytest
from helpers import TINY, TINY_ARGS, listing, refused, run_main, tiny_args

from ecgkeras import EcgkerasError
from ecgkeras.models import ARCHITECTURES
from ecgkeras.report.aggregate import run_study
from ecgkeras.runs import RECORD_FILE, RunConfig, load_run
from ecgkeras.study.layout import STUDY_FILE
from ecgkeras.study.plan import plan_runs, plan_study, register_plan


@pytest.mark.parametrize("kwargs, match", [
    ({"parameters": {"learning_rat": 0.1}}, "unknown parameter"),
    ({"parameters": {"seed": 1}}, "set by the study itself: use --seeds"),
    ({"architectures": ["cnn-tcnn"]}, "unknown architecture"),
])
def test_bad_study_arguments(synthetic_ptbxl, tmp_path, kwargs, match):
    with pytest.raises(EcgkerasError, match=match):
        run_study(synthetic_ptbxl, tmp_path / "s", **kwargs)


def test_a_folder_that_is_not_ptbxl_is_refused(tmp_path):
    with pytest.raises(EcgkerasError, match="ptbxl_database.csv|scp_statements.csv|not found"):
        run_study(tmp_path, tmp_path / "s", architectures=["cnn"])


@pytest.mark.slow
def test_mixing_configurations_is_refused_unless_asked_and_then_described_truly(tiny_study_copy, synthetic_ptbxl):
    out = tiny_study_copy
    before = (out / "study.json").read_text()
    with pytest.raises(EcgkerasError, match="different configuration.*learning_rate 0.001 there, 0.01 now"):
        run_study(synthetic_ptbxl, out, architectures=["cnn"], seeds=[0, 1],
                  parameters={**TINY, "learning_rate": 0.01})
    assert (out / "study.json").read_text() == before
    mixed = run_study(synthetic_ptbxl, out, architectures=["cnn"], seeds=[1], allow_mixed=True,
                      parameters={**TINY, "learning_rate": 0.01}, aggregate=False)  # into a free run folder
    assert not mixed.skipped and [p.name for p in mixed.completed] == ["seed-1"]
    assert load_run(out / "cnn" / "seed-0").config.training.learning_rate == 0.001  # kept as it was
    groups = {group["parameters"]["learning_rate"]: group["runs"]
              for group in json.loads((out / "study.json").read_text())["configurations"]}
    assert groups == {0.001: ["cnn/seed-0", "cnn-gru/seed-0"], 0.01: ["cnn/seed-1"]}


def test_every_run_parameter_is_accepted_by_the_study(synthetic_ptbxl, tmp_path):
    defaults = RunConfig(data_dir="x").parameters()
    owned = {"data_dir", "architecture", "seed"}
    planned = plan_runs(synthetic_ptbxl, tmp_path, ["cnn"], [0],
                        {name: value for name, value in defaults.items() if name not in owned})
    assert [path.relative_to(tmp_path).as_posix() for path in planned] == ["cnn/seed-0"]
    chosen = {"window_stride": 50, "focal_gamma": 1.0, "max_pos_weight": 10.0, "lr_factor": 0.2,
              "min_learning_rate": 1e-6, "pool_size": 2, "train_folds": [1, 2, 3, 4, 5, 6, 7]}
    config = next(iter(plan_runs(synthetic_ptbxl, tmp_path, ["cnn"], [0], chosen).values()))
    assert {name: config.parameters()[name] for name in chosen} == chosen
    with pytest.raises(EcgkerasError, match="--seeds"):
        plan_runs(synthetic_ptbxl, tmp_path, ["cnn"], [0], {"seed": 3})


def test_a_read_only_study_folder_is_a_one_line_error(read_only_dir, synthetic_ptbxl, capsys):
    # one error line, after the cache's progress bar when this is the session's first read of the data
    refused(["study", "--data-dir", synthetic_ptbxl, "--out", read_only_dir / "study", "--architectures", "cnn",
             "-p", "epochs", "1"], capsys, str(read_only_dir / "study"), "writable --out")


@pytest.mark.slow
def test_a_study_redoes_an_unreadable_record_and_ignores_a_broken_study_file(tiny_study_copy, synthetic_ptbxl):
    out = tiny_study_copy
    kept = (out / "cnn-gru" / "seed-0" / RECORD_FILE).read_bytes()
    (out / "cnn" / "seed-0" / RECORD_FILE).write_text("{}")
    (out / "study.json").write_text("")
    again = run_study(synthetic_ptbxl, out, architectures=["cnn", "cnn-gru"], parameters=TINY, aggregate=False)
    assert [path.parent.name for path in again.completed] == ["cnn"] and load_run(out / "cnn" / "seed-0")
    assert (out / "cnn-gru" / "seed-0" / RECORD_FILE).read_bytes() == kept
    described = json.loads((out / "study.json").read_text())
    assert [group["runs"] for group in described["configurations"]] == [["cnn/seed-0", "cnn-gru/seed-0"]]


@pytest.mark.slow
def test_allow_mixed_never_reports_success_for_runs_of_another_configuration(tiny_study, synthetic_ptbxl, capsys):
    before = listing(tiny_study)
    refused(["study", "--data-dir", synthetic_ptbxl, "--out", tiny_study, "--architectures", "cnn", *tiny_args(learning_rate=0.002),
             "--allow-mixed"], capsys, "cnn/seed-0", "learning_rate 0.001 there, 0.002 now", "another --out")
    refused(["study", "--data-dir", synthetic_ptbxl, "--out", tiny_study, "--architectures", "cnn", *tiny_args(learning_rate=0.002)],
            capsys, "different configuration", "--allow-mixed")
    assert listing(tiny_study) == before


def test_allow_mixed_plans_free_runs_beside_another_studys_planned_ones_and_study_json_tells_them_apart(tmp_path):
    # another configuration beside a study's planned, not yet complete run (after Ctrl-C too: test_runner)
    out = tmp_path / "study"
    register_plan(out, plan_study(None, out, ["cnn"], [0], {**TINY, "epochs": 3}).configs, allow_mixed=False)
    other = plan_study(None, out, ["cnn"], [1], {**TINY, "learning_rate": 0.002}).configs
    with pytest.raises(EcgkerasError, match="different configuration.*cnn/seed-0 planned by another study"):
        register_plan(out, other, allow_mixed=False)
    register_plan(out, other, allow_mixed=True)  # its own free run folder only
    groups = json.loads((out / STUDY_FILE).read_text())["configurations"]
    assert sorted((group["parameters"]["learning_rate"], group["parameters"]["epochs"], group["runs"])
                  for group in groups) == [(0.001, 3, ["cnn/seed-0"]), (0.002, 1, ["cnn/seed-1"])]


def test_list_runs_and_shards_use_the_studys_planner(capsys):
    base = ["study", "--architectures", "cnn", "cnn-gru", "cnn", "--seeds", "0", "0", "--list-runs"]
    assert run_main(base, capsys)[1].split() == ["cnn/seed-0", "cnn-gru/seed-0"]
    assert run_main([*base, "--shard", "1/2"], capsys)[1].split() == ["cnn/seed-0"]
    assert run_main([*base, "--shard", "2/2"], capsys)[1].split() == ["cnn-gru/seed-0"]


def test_architecture_groups_and_a_crossed_grid_list_one_run_per_cell(capsys):
    base = ["study", "--seeds", "0", "1", "--list-runs"]
    assert run_main([*base, "--architectures", "benchmark", "temporal"], capsys)[1].split() == [
        f"{arch}/seed-{seed}" for arch in ("inception1d", "xresnet1d101", "cnn-tcn", "cnn-transformer")
        for seed in (0, 1)]
    assert len(run_main([*base, "--architectures", "all"], capsys)[1].split()) == 2 * len(ARCHITECTURES)
    crossed = run_main([*base, "--architectures", "cnn", "cnn-gru", "--grid", "rnn_readout=last,pool",
                        "--grid", "rnn_units=[8,16]"], capsys)[1].split()
    assert crossed[:4] == ["cnn@rnn_readout=last,rnn_units=8/seed-0", "cnn@rnn_readout=last,rnn_units=8/seed-1",
                           "cnn@rnn_readout=last,rnn_units=16/seed-0", "cnn@rnn_readout=last,rnn_units=16/seed-1"]
    assert len(crossed) == len(set(crossed)) == 2 * 2 * 2 * 2 and "cnn-gru@rnn_readout=pool,rnn_units=16/seed-1" in crossed


def test_a_crossed_grid_plans_each_cell_with_its_value_and_registers_them_together(tmp_path):
    out = tmp_path / "study"
    plan = plan_study(None, out, ["cnn-gru"], [0], {}, crossed={"rnn_readout": ["last", "pool"]})
    assert {run.relative_to(out).as_posix(): config.model.rnn_readout for run, config in plan.configs.items()} == {
        "cnn-gru@rnn_readout=last/seed-0": "last", "cnn-gru@rnn_readout=pool/seed-0": "pool"}
    register_plan(out, plan.configs, allow_mixed=False)  # the two cells' configurations are not a conflict
    register_plan(out, plan.configs, allow_mixed=False)  # and the same grid again is the same study
    groups = json.loads((out / STUDY_FILE).read_text())["configurations"]
    assert sorted(run for group in groups for run in group["runs"]) == ["cnn-gru@rnn_readout=last/seed-0",
                                                                        "cnn-gru@rnn_readout=pool/seed-0"]


@pytest.mark.parametrize("extra, fragment", [
    (["--grid", "rnn_readout"], "--grid 'rnn_readout': give NAME=VALUE1,VALUE2"),
    (["--grid", "rnn_readout=last,last"], "repeats a value"),
    (["--grid", "rnn_readout=last", "--grid", "rnn_readout=pool"], "--grid rnn_readout is given twice"),
    (["--grid", "rnn_readout=last,pool", "-p", "rnn_readout", "pool"], "given by -p and by --grid"),
    (["--grid", "seed=1,2"], "set by the study itself: use --seeds"),
    (["--grid", "rnn_readout=last,poo"], "rnn_readout='poo': must be one of last, pool"),
    (["--grid", "rnn_readouts=last,pool"], "unknown parameter(s) ['rnn_readouts']"),
    (["--architectures", "papers"], "or a group: paper, benchmark, temporal, all"),
    (["-p", "batch_size", "16", "-p", "batch_size", "32"], "-p batch_size is given twice"),
    (["-p", "epochs", "2", "--epochs", "1"], "epochs is given twice"),
    (["-p", "sampling_rate", "100", "--sampling-rate", "500"], "sampling_rate is given twice"),
    (["-p", "epochs", "abc"], "epochs='abc': expected an integer"),
    (["--data-dir", "/nonexistent"], "PTB-XL folder not found: /nonexistent"),
    (["--shard", "0/2"], "--shard '0/2'"),
    (["--shard", "3/2"], "--shard '3/2'"),
    (["--shard", "a/b"], "--shard 'a/b'"),
    (["--seeds", "-1"], "--seeds -1"),
    (["--architectures", "unknown"], "unknown architecture 'unknown'"),
])
def test_list_runs_refuses_what_the_study_refuses(extra, fragment, capsys, tmp_path):
    refused(["study", "--out", tmp_path / "study", "--list-runs", *extra], capsys, fragment)
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("extra, fragment", [
    (["-p", "crop_length", "100000"], "crop_length=100000 does not fit records of 1000 samples"),
    (["-p", "depth", "2"], "depth=2 does not apply to 'cnn'"),
    (["-p", "filters", "[8,8,8,8,8,8,8,8,8,8,8]", "-p", "kernel_sizes", "[3,3,3,3,3,3,3,3,3,3,3]"],
     "too few for the front-end"),
    (["-p", "crop_length", "8"], "8 time steps are too few"),
])
def test_checks_that_need_the_data_run_before_anything_is_written(extra, fragment, synthetic_ptbxl, tmp_path,
                                                                  capsys):
    out = tmp_path / "study"
    args = ["study", "--data-dir", synthetic_ptbxl, "--out", out, "--architectures", "cnn", *extra]
    refused(args, capsys, fragment)
    assert not out.exists()
    refused([*args, "--list-runs"], capsys, fragment)  # --list-runs with --data-dir checks them too


def test_an_out_that_is_a_file_is_refused(synthetic_ptbxl, tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("mine\n")
    refused(["study", "--data-dir", synthetic_ptbxl, "--out", target, "--architectures", "cnn"], capsys,
            "is a file")
    assert target.read_text() == "mine\n"


@pytest.mark.slow
def test_an_out_inside_a_run_or_study_folder_is_refused(tiny_study, synthetic_ptbxl, capsys):
    before = listing(tiny_study)
    for inside, kind in ((tiny_study / "cnn" / "seed-0", "run"), (tiny_study / "cnn" / "seed-0" / "x", "run"),
                         (tiny_study / "cnn", "study")):
        refused(["study", "--data-dir", synthetic_ptbxl, "--out", inside, "--architectures", "cnn", *TINY_ARGS],
                capsys, f"inside the {kind} folder")
    assert listing(tiny_study) == before


def test_a_study_refuses_an_unmarked_report_folder_before_training(synthetic_ptbxl, tmp_path):
    report = tmp_path / "study" / "report"
    report.mkdir(parents=True)
    (report / "slides.pdf").write_text("mine")
    with pytest.raises(EcgkerasError, match="report .*no .ecgkeras marker"):
        run_study(synthetic_ptbxl, tmp_path / "study", architectures=["cnn"], parameters=TINY)
    assert sorted(p.name for p in (tmp_path / "study").iterdir()) == ["report"]
