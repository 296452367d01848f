"""A study's summary and report: the aggregation notebook executed on its run records, the HTML
site written from it, and `run_study`, which executes a study (`ecgkeras.study.runner`) and then
aggregates it. Summary, report and published copies are each replaced whole (`replaced_folder`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

import papermill

from ecgkeras.errors import EcgkerasError
from ecgkeras.files import atomic_write_text, check_replaceable, replaced_folder
from ecgkeras.models import PAPER_ARCHITECTURES
from ecgkeras.report.site import write_site
from ecgkeras.runs.config import RunConfig
from ecgkeras.runs.record import find_runs
from ecgkeras.schema import check_parameter
from ecgkeras.study.demo import check_publish, prepare_demo
from ecgkeras.study.external import check_external, evaluate_externally
from ecgkeras.study.layout import PUBLISHED_KIND, REPORT_DIR, REPORT_KIND, SUMMARY_DIR, SUMMARY_KIND
from ecgkeras.study.notebooks import AGGREGATE_NOTEBOOK, execute_notebook, to_ipynb
from ecgkeras.study.request import StudyRequest, require_folders
from ecgkeras.study.runner import Execution, StudyResult, execute_study
from ecgkeras.tuning.tune import read_settings, tuned_configurations

PUBLISHED_SUFFIXES = {".md", ".csv", ".tex", ".png", ".pdf"}  # what a published summary holds


def run_study(data_dir: str | Path, study_dir: str | Path,
              architectures: Iterable[str] = PAPER_ARCHITECTURES, seeds: Iterable[int] = (0,),
              parameters: dict[str, Any] | None = None, jobs: int = 1, allow_mixed: bool = False,
              aggregate: bool = True, log_output: bool = False, execution: Execution | None = None,
              crossed: dict[str, list[Any]] | None = None, external: Iterable[Path] = ()) -> StudyResult:
    """Execute every missing run of the study (`execute_study`, same arguments), validate the complete ones
    on each `external` dataset, then aggregate it once every run of its grid is complete or failed here
    (`result.summary_dir`)."""
    study_dir = Path(study_dir).resolve()
    sharded = bool(execution and execution.shard)
    if aggregate and not sharded:  # before training: aggregation replaces these folders at the end
        check_replaceable(study_dir / SUMMARY_DIR, SUMMARY_KIND)
        check_replaceable(study_dir / REPORT_DIR, REPORT_KIND)
    result = execute_study(data_dir, study_dir, architectures, seeds, parameters, jobs, allow_mixed, log_output,
                           execution, crossed)
    if external and not sharded:
        evaluate_externally(study_dir, external)
    if aggregate and result.ready_to_aggregate:
        result.summary_dir = aggregate_study(study_dir, bootstrap_resamples=result.bootstrap_resamples,
                                             log_output=log_output)
    return result


def run_request(request: StudyRequest) -> StudyResult:
    """What `ecgkeras study` does: the demo's data made when asked (after every check), the study run and
    aggregated (`run_study`), and its summary published with --publish once every run is complete."""
    check_external(request.external)
    if request.from_tuning:
        return run_tuned_study(request)
    if request.demo:
        prepare_demo(request)
    elif request.publish:
        check_publish(request)  # refuses: only the demo is published
    require_folders(request)
    result = run_study(request.data_dir, request.study_dir, request.architectures, request.seeds,
                       request.parameters, request.jobs, request.allow_mixed, log_output=request.log_output,
                       execution=request.execution, crossed=request.grid, external=request.external)
    if request.publish and result.summary_dir and not result.failed:
        result.published = publish_summary(result.summary_dir, request.publish)
    return result


def run_tuned_study(request: StudyRequest) -> StudyResult:
    """`study --from-tuning`: each architecture's best configuration of the tuning (`tuned_configurations`),
    trained for the request's seeds into the study folder (the tuning's own by default), then aggregated."""
    tuning = request.from_tuning.resolve()
    configurations = tuned_configurations(tuning)
    if unknown := [name for name in request.architectures if name not in configurations]:
        raise EcgkerasError(f"--architectures {' '.join(unknown)}: not tuned in {tuning} (tuned: "
                            f"{', '.join(configurations)})")
    chosen = {name: configurations[name] for name in request.architectures or configurations}
    data_dir = request.data_dir or read_settings(tuning).data_dir
    study_dir = (request.study_dir or tuning).resolve()
    if owned := sorted(set(request.parameters) & {name for values in chosen.values() for name in values}):
        raise EcgkerasError(f"-p {', '.join(owned)}: chosen by the tuning; leave them out, or tune again")
    check_replaceable(study_dir / SUMMARY_DIR, SUMMARY_KIND)
    check_replaceable(study_dir / REPORT_DIR, REPORT_KIND)
    result, ready = StudyResult(study_dir), []
    for architecture, parameters in chosen.items():  # one configuration each: free run folders of their own
        part = execute_study(data_dir, study_dir, [architecture], request.seeds, {**parameters, **request.parameters},
                             request.jobs, True, request.log_output, request.execution)
        for name in ("completed", "skipped", "submitted"):
            getattr(result, name).extend(getattr(part, name))
        result.failed.update(part.failed)
        result.locked.update(part.locked)
        result.bootstrap_resamples = part.bootstrap_resamples
        ready.append(part.ready_to_aggregate)
    result.ready_to_aggregate = all(ready)
    if result.ready_to_aggregate:
        result.summary_dir = aggregate_study(study_dir, bootstrap_resamples=result.bootstrap_resamples,
                                             log_output=request.log_output)
    return result


def aggregate_study(study_dir: str | Path, summary_dir: str | Path | None = None,
                    bootstrap_resamples: int = 1000, log_output: bool = False) -> Path:
    """Execute the aggregation notebook on `study_dir`, then write its HTML report; returns the summary folder.

    The summary is written into a staging folder that replaces `summary_dir` (default
    `<study_dir>/summary`) only once the notebook succeeded, so a failed or interrupted
    aggregation keeps the previous summary and report.
    """
    study_dir = Path(study_dir).resolve()
    check_parameter(RunConfig, "bootstrap_resamples", bootstrap_resamples)
    try:
        runs = find_runs(study_dir)
    except EcgkerasError as exc:  # a damaged run: refused before anything is replaced
        raise EcgkerasError(f"aggregation refused ({exc}); the previous summary and report are kept") from None
    if not runs:
        raise EcgkerasError(f"no complete run in {study_dir}: run `ecgkeras study` first")
    summary_dir = Path(summary_dir).resolve() if summary_dir else study_dir / SUMMARY_DIR
    check_replaceable(study_dir / REPORT_DIR, REPORT_KIND)  # written next, from the new summary
    with replaced_folder(summary_dir, SUMMARY_KIND, "--summary-dir") as staging:
        executed = staging / f"{AGGREGATE_NOTEBOOK}.ipynb"
        try:
            with tempfile.TemporaryDirectory(prefix="ecgkeras-notebooks-") as tmp:
                execute_notebook(
                    to_ipynb(AGGREGATE_NOTEBOOK, Path(tmp)), executed,
                    {"study_dir": str(study_dir), "summary_dir": str(staging), "bootstrap_resamples": bootstrap_resamples},
                    log_output=log_output)
        except papermill.PapermillExecutionError as exc:
            cause = exc.evalue if exc.ename == EcgkerasError.__name__ else f"{exc.ename}: {exc.evalue}"
            raise EcgkerasError(f"aggregation failed ({cause}); the previous summary and report are kept") from None
        except Exception as exc:  # the kernel died or could not start
            raise EcgkerasError(f"aggregation failed ({type(exc).__name__}: {exc}); the previous summary and "
                                "report are kept") from None
        staged, final = (json.dumps(str(path))[1:-1] for path in (staging, summary_dir))
        atomic_write_text(executed, executed.read_text(encoding="utf-8").replace(staged, final))  # where it ends up
    write_site(study_dir, summary_dir=summary_dir)  # the HTML report, <study_dir>/report/index.html
    return summary_dir


def publish_summary(summary_dir: Path, target: Path) -> Path:
    """Copy a summary's tables and figures (not notebooks) to `target`, e.g. results/demo-synthetic.

    `target` is replaced whole, and only when missing, empty or published by ecgkeras before.
    """
    target = Path(target).resolve()
    with replaced_folder(target, PUBLISHED_KIND, "--publish") as staging:
        for path in summary_dir.iterdir():
            if path.suffix in PUBLISHED_SUFFIXES:
                shutil.copy2(path, staging / path.name)
    return target
