"""ecgkeras.explain: `ecgkeras explain`: a real record's 12 leads with attributions; the default method is faithful."""

from __future__ import annotations

import nbformat
import numpy as np
import pytest
import wfdb
from PIL import Image
from helpers import run_cli_one_line

from ecgkeras import EcgkerasError
from ecgkeras.cli import main
from ecgkeras.data.ptbxl import LEADS
from ecgkeras.explain import Classifier, attribute, explain_ecg, faithfulness, plot_explanation, save_explanation
from ecgkeras.runs import ecg_input, load_run
from ecgkeras.study.notebooks import to_ipynb


INFERIOR_MI = "records100/00000/00210_lr"  # fold 10 (test) of the subset, labelled IMI


@pytest.mark.slow
def test_explain_draws_the_12_leads_of_a_real_record_as_png_and_pdf(real_run, real_ptbxl, tmp_path, capsys):
    record = real_ptbxl / INFERIOR_MI
    main(["explain", "--run", str(real_run.run_dir), str(record), "--classes", "IMI", "NORM",
          "--out", str(tmp_path / "imi.png")])
    assert "IMI, NORM" in capsys.readouterr().out
    assert (tmp_path / "imi.pdf").read_bytes().startswith(b"%PDF")
    with Image.open(tmp_path / "imi.png") as image:
        assert image.width > 1000 and np.asarray(image.convert("L")).std() > 10

    explanation = explain_ecg(real_run.run_dir, record, ["IMI", "NORM"])
    assert list(explanation.attributions) == ["IMI", "NORM"]
    for attribution in explanation.attributions.values():
        assert attribution.shape == explanation.signal.shape == (1000, 12) and np.isfinite(attribution).all()
    fig = plot_explanation(explanation)
    panels = [ax for ax in fig.axes if ax.lines]
    assert len(panels) == 12
    assert {ax.texts[0].get_text().upper() for ax in panels} == set(LEADS)
    assert "IMI p=" in fig._suptitle.get_text() and "threshold" in fig._suptitle.get_text()


@pytest.mark.slow
def test_without_classes_the_predicted_ones_are_explained(real_run, real_ptbxl, tmp_path):
    explanation = explain_ecg(real_run.run_dir, real_ptbxl / INFERIOR_MI)
    table = explanation.table
    expected = table.loc[table["predicted"], "class"].tolist()[:4] or [table["class"].iloc[0]]
    assert list(explanation.attributions) == expected
    paths = save_explanation(explanation, tmp_path / "out")
    assert [p.name for p in paths] == ["out.png", "out.pdf"]


@pytest.mark.slow
def test_integrated_gradients_add_up_to_the_probability_change(real_run, real_ptbxl):
    # completeness: the attributions sum to p(record) - p(baseline), so they are the real gradients' integral
    run = load_run(real_run.run_dir)
    _, X = ecg_input(run, real_ptbxl / INFERIOR_MI)
    classifier = Classifier.from_run(run)
    index = run.classes.index("IMI")
    attribution = attribute(classifier, X[0], index, "integrated_gradients")
    probabilities = classifier.predict(np.concatenate([X, np.zeros_like(X)]))[:, index]
    assert attribution.sum() == pytest.approx(probabilities[0] - probabilities[1], abs=0.02)


@pytest.mark.slow
def test_bad_inputs_get_one_line_errors(real_run, real_ptbxl, tmp_path, capsys):
    resampled = explain_ecg(real_run.run_dir, real_ptbxl / "records500" / "00000" / "00210_hr", method="gradient_x_input")
    assert resampled.signal.shape == (1000, 12) and resampled.sampling_rate == 100  # 500 Hz read at the run's rate
    with pytest.raises(EcgkerasError, match="unknown class.*NORM"):
        explain_ecg(real_run.run_dir, real_ptbxl / INFERIOR_MI, ["MI"])
    with pytest.raises(EcgkerasError, match="unknown attribution method"):
        explain_ecg(real_run.run_dir, real_ptbxl / INFERIOR_MI, method="lime")
    names = [lead for lead in LEADS[:-1]] + ["V7"]  # posterior lead instead of V6
    wfdb.wrsamp("wrong_leads", fs=100, units=["mV"] * 12, sig_name=names, write_dir=str(tmp_path),
                p_signal=np.zeros((1000, 12)), fmt=["16"] * 12)
    with pytest.raises(EcgkerasError, match="leads"):
        explain_ecg(real_run.run_dir, tmp_path / "wrong_leads")
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", "--run", str(broken), str(real_ptbxl / INFERIOR_MI)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "incomplete" in error and len(error.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_default_method_beats_random_deletion_on_the_demo_data(synthetic_ptbxl, learned_run):
    run = learned_run
    from ecgkeras.data.ptbxl import load_ptbxl

    test = load_ptbxl(synthetic_ptbxl, progress=False).test
    X = run.standardizer.transform(test.X[:10])
    classifier = Classifier.from_run(run)
    table = faithfulness(classifier, X, classifier.predict(X).argmax(axis=1))
    assert table["method_area"].mean() < 0.85 * table["random_area"].mean()
    assert table["beats_random"].mean() >= 0.8


@pytest.mark.slow
def test_explain_notebook_walks_through_real_records(real_run, real_ptbxl, tmp_path):
    import papermill

    notebook = nbformat.read(to_ipynb("04_explain_predictions", tmp_path), as_version=4)
    assert sum("parameters" in c.metadata.get("tags", []) for c in notebook.cells) == 1
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")
    output = tmp_path / "explained.ipynb"
    papermill.execute_notebook(str(tmp_path / "04_explain_predictions.ipynb"), str(output), kernel_name="python3",
                               parameters={"run_dir": str(real_run.run_dir), "data_dir": str(real_ptbxl),
                                           "records": [INFERIOR_MI, "records100/00000/00180_lr"]},
                               progress_bar=False)
    executed = nbformat.read(output, as_version=4)
    images = [o for c in executed.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2


@pytest.mark.slow
def test_explain_says_which_predicted_classes_it_left_out(tiny_run, synthetic_ptbxl, tmp_path, capsys, monkeypatch):
    import ecgkeras.explain as explain
    from ecgkeras.runs import predict_ecg

    def everything_predicted(run_dir, record):
        return predict_ecg(run_dir, record).assign(predicted=True)

    monkeypatch.setattr(explain, "predict_ecg", everything_predicted)
    record = synthetic_ptbxl / "records100" / "00000" / "00001_lr"
    main(["explain", "--run", str(tiny_run.run_dir), str(record), "--out", str(tmp_path / "fig"),
          "--method", "gradient_x_input"])
    out = capsys.readouterr().out
    drawn = out.splitlines()[0].split("attribution of ")[1].split(" (")[0].split(", ")
    left = out.splitlines()[1].split("not drawn: ")[1].split(";")[0].split(", ")
    assert len(drawn) == explain.MAX_AUTO_CLASSES and sorted(drawn + left) == sorted(tiny_run.classes)
    assert f"--classes {' '.join(left)}" in out
    explanation = explain.explain_ecg(tiny_run.run_dir, record, method="gradient_x_input")
    fig = explain.plot_explanation(explanation)
    assert "not drawn: " + ", ".join(left) in fig._suptitle.get_text()


@pytest.mark.slow
def test_explain_refuses_more_classes_than_one_figure_draws(tiny_run, synthetic_ptbxl, tmp_path, capsys):
    record = synthetic_ptbxl / "records100" / "00000" / "00001_lr"
    code, err = run_cli_one_line(["explain", "--run", tiny_run.run_dir, record, "--out", tmp_path / "fig",
                            "--classes", *tiny_run.classes[:13]], capsys)
    assert code == 2 and "13 classes" in err and "at most" in err
    assert list(tmp_path.iterdir()) == []
