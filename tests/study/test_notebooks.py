"""ecgkeras.study.notebooks and the notebooks it runs: one parameters cell, run parameters by
name, the planned configuration injected whole; the tour runs on the real subset."""

from __future__ import annotations

import ast

import nbformat

import pytest
from ecgkeras.runs import RunConfig, is_complete, load_run
from ecgkeras.study.notebooks import NOTEBOOK_SOURCES, TRAIN_NOTEBOOK, notebook_parameters, to_ipynb

NOTEBOOKS = sorted(path.name.removesuffix(".py") for path in NOTEBOOK_SOURCES.iterdir() if path.name.endswith(".py"))


def test_notebooks_have_one_parameters_cell_and_no_stored_outputs(tmp_path):
    for name in NOTEBOOKS:
        notebook = nbformat.read(to_ipynb(name, tmp_path), as_version=4)
        tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    for name in NOTEBOOKS:
        cell = next(c for c in nbformat.read(tmp_path / f"{name}.ipynb", as_version=4).cells
                    if "parameters" in c.metadata.get("tags", []))
        assigned = {target.id for statement in ast.parse(cell.source).body for target in statement.targets}
        assert set(notebook_parameters(tmp_path / f"{name}.ipynb")) == assigned, name  # papermill parses all


@pytest.mark.slow
def test_study_runs_each_architecture_through_papermill_and_records_parameters(tiny_study_and_result):
    out, result = tiny_study_and_result
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


@pytest.mark.slow
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


def test_the_notebook_parameters_cell_holds_run_parameters_by_name_and_the_output_folder(tmp_path):
    defaults = notebook_parameters(to_ipynb(TRAIN_NOTEBOOK, tmp_path))
    assert set(defaults) == {"parameters", "output_dir"}
    assert set(defaults["parameters"]) <= set(RunConfig.parameter_names())
    config = RunConfig.from_parameters(**defaults["parameters"])
    expected = RunConfig.from_parameters(data_dir=".").parameters() | defaults["parameters"]
    assert config.parameters() == expected  # the schema supplies every other default


def test_a_kernel_that_dies_before_its_first_reply_is_started_again_but_a_failing_cell_is_not(
        tmp_path, monkeypatch, caplog):
    from ecgkeras.study import notebooks

    calls = []

    def flaky(*args, **kwargs):  # what jupyter_client raises when two kernels raced for one port
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")

    monkeypatch.setattr(notebooks.papermill, "execute_notebook", flaky)
    notebooks.execute_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb", {})
    assert len(calls) == 2 and "did not start" in caplog.text

    def broken(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("something else")

    calls.clear()
    monkeypatch.setattr(notebooks.papermill, "execute_notebook", broken)
    with pytest.raises(RuntimeError, match="something else"):
        notebooks.execute_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb", {})
    assert len(calls) == 1
