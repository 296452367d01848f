"""The notebooks run under papermill; the study runner resumes, isolates failures and aggregates."""

import ast
import json

import nbformat
import pytest

from ecgkeras import EcgkerasError
from ecgkeras.report.aggregate import run_study
from ecgkeras.runs import find_runs, is_complete, load_run
from ecgkeras.study.notebooks import notebook_parameters, to_ipynb

TINY = {"epochs": 1, "batch_size": 32, "bootstrap_resamples": 10, "filters": [8, 8, 16, 16],
        "rnn_units": 8, "head_units": 16}


@pytest.fixture(scope="module")
def study(synthetic_ptbxl, tmp_path_factory):
    """A two-architecture study on the synthetic data, with its summary."""
    out = tmp_path_factory.mktemp("study") / "demo"
    result = run_study(synthetic_ptbxl, out, architectures=["cnn", "cnn-gru"], parameters=TINY)
    return out, result


def test_notebooks_have_one_parameters_cell_and_no_stored_outputs(tmp_path):
    for name in ("01_ptbxl_tour", "02_train_architecture", "03_aggregate_results", "04_explain_predictions"):
        notebook = nbformat.read(to_ipynb(name, tmp_path), as_version=4)
        tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    for name in ("01_ptbxl_tour", "02_train_architecture", "03_aggregate_results", "04_explain_predictions"):
        cell = next(c for c in nbformat.read(tmp_path / f"{name}.ipynb", as_version=4).cells
                    if "parameters" in c.metadata.get("tags", []))
        assigned = {target.id for statement in ast.parse(cell.source).body for target in statement.targets}
        assert set(notebook_parameters(tmp_path / f"{name}.ipynb")) == assigned, name  # papermill parses all


def test_study_runs_each_architecture_through_papermill_and_records_parameters(study):
    out, result = study
    assert not result.failed and len(result.completed) == 2
    for architecture in ("cnn", "cnn-gru"):
        run_dir = out / architecture / "seed-0"
        assert is_complete(run_dir)
        executed = nbformat.read(run_dir / "02_train_architecture.ipynb", as_version=4)
        injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert injected
        namespace: dict = {}
        exec(injected[0].source, namespace)  # the kernel got the planned configuration whole, nothing re-derived
        config = load_run(run_dir).config
        assert namespace["parameters"] == config.parameters() and namespace["output_dir"] == str(run_dir)
        assert config.architecture == architecture and config.training.epochs == 1
        assert config.model.rnn_units == 8 and config.bootstrap_resamples == 10


def test_study_writes_the_summary_with_tables_and_figures(study):
    out, result = study
    summary = result.summary_dir
    assert summary == out / "summary"
    for name in ("results_tuned.md", "results_tuned.csv", "results_tuned.tex", "results_fixed.md",
                 "recall_heatmap.png", "recall_heatmap.pdf", "recall_bars.png", "complexity.png",
                 "paired_comparison.csv", "03_aggregate_results.ipynb"):
        assert (summary / name).is_file(), name
    assert "CNN-GRU" in (summary / "results_tuned.md").read_text()


def test_interrupted_study_resumes_only_the_missing_runs(study, synthetic_ptbxl):
    out, _ = study
    (out / "cnn-gru" / "seed-0" / "metrics.json").unlink()  # as if an older version was killed mid-write
    kept = (out / "cnn" / "seed-0" / "metrics.json").stat().st_mtime_ns
    result = run_study(synthetic_ptbxl, out, architectures=["cnn", "cnn-gru"], parameters=TINY,
                       aggregate=False)
    assert [p.parent.name for p in result.completed] == ["cnn-gru"]
    assert [p.parent.name for p in result.skipped] == ["cnn"]
    assert (out / "cnn" / "seed-0" / "metrics.json").stat().st_mtime_ns == kept
    assert len(find_runs(out)) == 2


def test_a_failed_run_is_reported_and_does_not_stop_the_others(synthetic_ptbxl, tmp_path):
    # a file where seed 1's staging folder goes makes its notebook fail inside the kernel, after planning
    (tmp_path / "s" / "cnn").mkdir(parents=True)
    (tmp_path / "s" / "cnn" / ".seed-1.staging").write_text("in the way")
    result = run_study(synthetic_ptbxl, tmp_path / "s", architectures=["cnn"], seeds=[0, 1], parameters=TINY,
                       jobs=2, aggregate=False)
    assert [run_dir.name for run_dir in result.completed] == ["seed-0"]
    assert [run_dir.name for run_dir in result.failed] == ["seed-1"]
    for run_dir, reason in result.failed.items():
        assert str(run_dir / "02_train_architecture.ipynb") in reason and "cannot write the run folder" in reason


@pytest.mark.parametrize("kwargs, match", [
    ({"parameters": {"learning_rat": 0.1}}, "unknown parameter"),
    ({"parameters": {"seed": 1}}, "set by the study itself: use --seeds"),
    ({"architectures": ["cnn-tcn"]}, "unknown architecture"),
])
def test_bad_study_arguments(synthetic_ptbxl, tmp_path, kwargs, match):
    with pytest.raises(EcgkerasError, match=match):
        run_study(synthetic_ptbxl, tmp_path / "s", **kwargs)


def test_a_folder_that_is_not_ptbxl_is_refused(tmp_path):
    with pytest.raises(EcgkerasError, match="ptbxl_database.csv|scp_statements.csv|not found"):
        run_study(tmp_path, tmp_path / "s", architectures=["cnn"])


def test_mixing_configurations_is_refused_unless_asked_and_then_described_truly(study, synthetic_ptbxl):
    out, _ = study
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


def test_tour_notebook_runs_on_the_real_subset(real_ptbxl, tmp_path):
    import papermill

    output = tmp_path / "tour.ipynb"
    papermill.execute_notebook(str(to_ipynb("01_ptbxl_tour", tmp_path)), str(output),
                               parameters={"data_dir": str(real_ptbxl)}, kernel_name="python3",
                               progress_bar=False)
    executed = nbformat.read(output, as_version=4)
    images = [o for c in executed.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # class counts, co-occurrence and example 12-lead plots
    assert any("23 classes" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
