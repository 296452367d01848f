"""Command line: `ecgkeras [--verbose] {download,synth,architectures,parameters,notebooks,study,tune,status,aggregate,report,predict,explain,evaluate,finetune}`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ecgkeras import quiet
from ecgkeras.errors import EcgkerasError


class _Parser(argparse.ArgumentParser):
    """Usage mistakes as the package's other errors: one line, naming the command, exit status 2."""

    def error(self, message: str):
        print(f"ecgkeras: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def positive_int(text: str) -> int:
    """argparse type: an integer of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (1 or more), got {text!r}")
    return value


def _download(args: argparse.Namespace) -> None:
    from ecgkeras.data.download import download_ptbxl

    path = download_ptbxl(args.dest, **({"url": args.url} if args.url else {}))
    print(f"PTB-XL ready in {path}; use it with --data-dir {path}")


def _synth(args: argparse.Namespace) -> None:
    from ecgkeras.data.synthetic import make_synthetic_ptbxl

    path = make_synthetic_ptbxl(args.out, n_records=args.records, seed=args.seed)
    _print_dataset_summary(path)


def _print_dataset_summary(path: Path) -> None:
    from ecgkeras.data.ptbxl import load_ptbxl

    dataset = load_ptbxl(path, progress=False)
    print(f"{path}: {len(dataset.ecg_ids)} records with a subclass label ({dataset.n_dropped} dropped), "
          f"{len(dataset.classes)} classes, signals {dataset.X.shape[1:]}")
    print(dataset.summary().to_string())


def _architectures(args: argparse.Namespace) -> None:
    from ecgkeras.models import ARCHITECTURES, build_model

    print(f"{'name':<16} {'display name':<16} {'group':<10} {'parameters':>10}   (100 Hz input, 23 classes; "
          "--architectures takes names and the groups paper, benchmark, temporal, all)")
    for name, arch in ARCHITECTURES.items():
        params = build_model(name, (1000, 12), 23).count_params()
        print(f"{name:<16} {arch.display_name:<16} {arch.group or '-':<10} {params:>10,}")


def _parameters(args: argparse.Namespace) -> None:
    from ecgkeras.runs.config import RunConfig
    from ecgkeras.schema import describe_parameters

    print("Run parameters: `ecgkeras study -p NAME VALUE` (VALUE as JSON: 0.001, [1, 2], null, true, or "
          "plain text), the training notebook's parameters cell, or RunConfig.from_parameters(NAME=VALUE). "
          "[tunable: ...]: searched by `ecgkeras tune` in that range unless its --space FILE says otherwise.")
    for part, schema in RunConfig.parts().items():
        print(f"\n{part}:")
        print("\n".join(f"  {line}" for line in describe_parameters(schema)))


def _notebooks(args: argparse.Namespace) -> None:
    from ecgkeras.study.notebooks import copy_notebooks

    for path in copy_notebooks(args.dir, args.format, args.force):
        print(path)


def _execution(args: argparse.Namespace):
    """Where `study` or `tune` executes (the arguments of `_add_execution_arguments`)."""
    from ecgkeras.study.devices import parse_gpus
    from ecgkeras.study.layout import parse_shard
    from ecgkeras.study.runner import Execution
    from ecgkeras.study.slurm import SlurmOptions, parse_sbatch

    slurm = SlurmOptions(partition=args.partition, account=args.account, time_min=args.time, mem_gb=args.mem_gb,
                         cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run, retries=args.retries,
                         extra=parse_sbatch(args.sbatch))
    return Execution(executor=args.executor, gpus=parse_gpus(args.gpus), runs_per_gpu=args.runs_per_gpu,
                     shard=parse_shard(args.shard) if args.shard else None, slurm=slurm, wait=not args.no_wait)


def _study_request(args: argparse.Namespace):
    from ecgkeras.models import PAPER_ARCHITECTURES
    from ecgkeras.study.demo import demo_request
    from ecgkeras.study.request import parse_grid, parse_parameters, study_request

    execution = _execution(args)
    parameters = parse_parameters(args.param, {"sampling_rate": args.sampling_rate, "epochs": args.epochs})
    return (demo_request if args.demo else study_request)(args.data_dir, args.out, publish=args.publish,
                         architectures=args.architectures or ([] if args.from_tuning else list(PAPER_ARCHITECTURES)),
                         seeds=args.seeds, parameters=parameters, grid=parse_grid(args.grid),
                         **({"jobs": args.jobs} if args.jobs is not None else {}),
                         allow_mixed=args.allow_mixed, execution=execution,
                         log_output=getattr(args, "verbose", False),
                         external=args.external, **({"from_tuning": args.from_tuning} if args.from_tuning else {}))


def _study(args: argparse.Namespace) -> None:
    from ecgkeras.report.aggregate import run_request
    from ecgkeras.study.layout import REPORT_DIR
    from ecgkeras.study.request import list_runs

    request = _study_request(args)
    if args.list_runs:
        print("\n".join(list_runs(request)))
        return
    result = run_request(request)
    print(f"study {result.study_dir}: {len(result.completed)} run(s) completed, "
          f"{len(result.skipped)} already complete, {len(result.failed)} failed"
          + (f", {len(result.locked)} running elsewhere" if result.locked else "")
          + (f", {len(result.submitted)} submitted" if result.submitted else ""))
    for run_dir, reason in result.failed.items():
        print(f"  FAILED {run_dir}: {reason}")
    for run_dir, owner in result.locked.items():
        print(f"  SKIPPED {run_dir}: being run by {owner}")
    if result.submitted:
        print(f"SLURM job array {result.slurm_job}: follow with `ecgkeras status {result.study_dir}`, then "
              "rerun this command to aggregate")
    elif result.locked:
        print(f"rerun this command (or `ecgkeras aggregate {result.study_dir}`) once they finish")
    if result.summary_dir:
        print(f"summary (tables and figures): {result.summary_dir}")
        if result.published:
            print(f"published to {result.published}")
        print(f"report: open {result.study_dir / REPORT_DIR / 'index.html'} in a browser")
    if request.publish and not result.published:
        print(f"not published to {request.publish}: the study is not complete")
    if result.failed:
        sys.exit(1)


def _tune(args: argparse.Namespace) -> None:
    from ecgkeras.models import PAPER_ARCHITECTURES
    from ecgkeras.study.request import parse_parameters
    from ecgkeras.tuning.layout import tuning_dir
    from ecgkeras.tuning.tune import tune

    summary = tune(args.data_dir, args.out, args.architectures or list(PAPER_ARCHITECTURES), args.trials,
                   parse_parameters(args.param, {"epochs": args.epochs}), args.space, args.storage, args.sampler_seed,
                   args.pruner, args.jobs, _execution(args))
    budget, slurm = summary["budget"], summary["slurm"]
    print(f"tuning {tuning_dir(args.out.resolve())}: {budget['trials']} trials per architecture, sampler seed "
          f"{budget['sampler_seed']}, pruner {budget['pruner']}, {summary['command_seconds']:.0f} s"
          + (f" (shard {args.shard})" if args.shard else ""))
    if slurm:
        print(f"SLURM job array {slurm['job']} ({'submitted' if slurm['submitted'] else 'submitted earlier'})"
              + ("" if slurm["waited"] else ": rerun this command once it finishes for the summary"))
    for architecture, result in summary["architectures"].items():
        counts, best = result["trials"], result["best"]
        print(f"  {architecture}: {counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed; "
              f"{result['epochs_run']} epochs run ({result['epochs_saved_by_pruning']} saved by pruning), "
              f"{result['trial_seconds']:.0f} s of trials; "
              + (f"best trial {best['trial']}: validation macro-AUPRC {best['validation_macro_auprc']:.4f} "
                 f"{best['params']}" if best else "no complete trial"))
    if all(result["finished"] for result in summary["architectures"].values()):
        print(f"next: ecgkeras study --from-tuning {args.out} --seeds 0 1 2")
    else:
        print("the budget is not spent yet: rerun this command (or the other shards) to finish it")


def _status(args: argparse.Namespace) -> None:
    from ecgkeras.study.status import status_lines

    print("\n".join(status_lines(args.study_dir)))


def _aggregate(args: argparse.Namespace) -> None:
    from ecgkeras.report.aggregate import aggregate_study
    from ecgkeras.runs.config import RunConfig
    from ecgkeras.schema import check_parameter
    from ecgkeras.study.layout import REPORT_DIR

    check_parameter(RunConfig, "bootstrap_resamples", args.bootstrap_resamples,
                    f"--bootstrap-resamples {args.bootstrap_resamples}")
    print(f"summary: {aggregate_study(args.study_dir, args.summary_dir, args.bootstrap_resamples)}")
    print(f"report: open {args.study_dir.resolve() / REPORT_DIR / 'index.html'} in a browser")


def _predict(args: argparse.Namespace) -> None:
    from ecgkeras.data.records import describe_conversions
    from ecgkeras.runs.inference import predict_ecg

    table = predict_ecg(args.run, args.ecg)
    predicted = table[table["predicted"]]
    print(f"{args.ecg}: " + (", ".join(f"{row['class']} ({row['probability']:.2f})"
                                          for _, row in predicted.iterrows()) or "no class above its threshold"))
    print(f"conversions: {describe_conversions(table.attrs['conversions'])}")
    print(table.head(args.top).to_string(index=False, float_format="%.3f"))


def _explain(args: argparse.Namespace) -> None:
    from ecgkeras.explain import explain_ecg, save_explanation

    explanation = explain_ecg(args.run, args.ecg, args.classes, args.method)
    paths = save_explanation(explanation, args.out)
    print(f"{args.ecg}: attribution of {', '.join(explanation.attributions)} ({explanation.method}) "
          f"drawn on the 12 leads: {', '.join(str(path) for path in paths)}")
    if explanation.left_out:
        print(f"also predicted, not drawn: {', '.join(explanation.left_out)}; draw them with "
              f"--classes {' '.join(explanation.left_out)}")


def _evaluate(args: argparse.Namespace) -> None:
    from ecgkeras.data.records import describe_conversions
    from ecgkeras.runs.external import (check_external_out, evaluate_external, external_path, per_class_frame,
                                        write_external)

    check_external_out(out := args.out or external_path(args.run, args.data_dir))
    evaluation = evaluate_external(args.run, args.data_dir)
    path = write_external(evaluation, out)
    metrics = evaluation["metrics"]["tuned"]
    print(f"{args.data_dir}: {evaluation['n_records']} records, {len(evaluation['classes'])} shared classes "
          f"(thresholds tuned on the run's validation fold); input: {describe_conversions(evaluation['conversions'])}")
    for name in ("macro_auroc", "macro_auprc", "micro_f1", "macro_f1", "hamming_loss"):
        low, high = metrics["ci95"].get(name, (float("nan"), float("nan")))
        print(f"  {name:<14} {metrics[name]:.3f}  [95% {low:.3f}, {high:.3f}]")
    print(per_class_frame(evaluation, "tuned").to_string(float_format="%.3f"))
    if evaluation["classes_not_in_data"]:
        print(f"not scored (no counterpart in the data): {', '.join(evaluation['classes_not_in_data'])}")
    print(f"written: {path}")


def _finetune(args: argparse.Namespace) -> None:
    from ecgkeras.study.finetune import finetune
    from ecgkeras.study.request import parse_parameters

    run = finetune(args.run, args.data_dir, args.out, parse_parameters(args.param, {"epochs": args.epochs}),
                   args.freeze_epochs)
    tuned = run.metrics("test")
    print(f"fine-tuned run {run.run_dir} (parent {run.parent['run_dir']}"
          f"{', new head' if run.parent['new_head'] else ''}): test macro-AUPRC {tuned['macro_auprc']:.3f}, "
          f"{len(run.classes)} classes")


def _report(args: argparse.Namespace) -> None:
    from ecgkeras.report.site import write_site

    index = write_site(args.study_dir, args.out)
    print(f"report: open {index} in a browser")


def _add_execution_arguments(command: argparse.ArgumentParser, unit: str, shard_help: str) -> None:
    """Where a command's runs (`unit` "run") or tuning workers ("worker") execute: local devices, a shard,
    or a SLURM job array; read back by `_execution`."""
    placement = command.add_argument_group(f"where {unit}s execute")
    placement.add_argument("--executor", choices=("local", "slurm"), default="local",
                           help=f"local: --jobs {unit}s at a time on this machine; slurm: one job array")
    placement.add_argument("--gpus", metavar="0,1|none|auto", default=None,
                           help=f"local GPUs to use, one {unit} per GPU at a time (default: auto-detect)")
    placement.add_argument("--runs-per-gpu", dest="runs_per_gpu", type=int, default=1, metavar="N",
                           help=f"concurrent {unit}s sharing one GPU" + (" (a worker trains one trial, a run, at a time)"
                                                                  if unit == "worker" else ""))
    placement.add_argument("--shard", metavar="I/N", help=shard_help)
    slurm = command.add_argument_group("SLURM (--executor slurm)")
    slurm.add_argument("--no-wait", action="store_true", help="return after submitting the job array")
    slurm.add_argument("--partition")
    slurm.add_argument("--account")
    slurm.add_argument("--time", type=int, default=240, metavar="MINUTES", help=f"time limit per {unit}")
    slurm.add_argument("--mem-gb", type=float, help=f"memory per {unit}")
    slurm.add_argument("--cpus-per-run", dest="cpus_per_run", type=int, default=2, metavar="N")
    slurm.add_argument("--gpus-per-run", dest="gpus_per_run", type=int, default=0, metavar="N")
    slurm.add_argument("--retries", type=int, default=2, help="requeues after preemption or time limit")
    slurm.add_argument("--sbatch", action="append", default=[], metavar="NAME=VALUE",
                       help="any other sbatch option, e.g. --sbatch qos=high --sbatch constraint=a100")


def build_parser() -> argparse.ArgumentParser:
    """The `ecgkeras` argument parser."""
    from ecgkeras.study.demo import DEMO_DATA, DEMO_RECORDS, DEMO_STUDY
    from ecgkeras.study.request import PTBXL_VARIABLE

    parser = _Parser(prog="ecgkeras", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    download = commands.add_parser("download", help="download and verify PTB-XL 1.0.3 from PhysioNet")
    download.add_argument("--dest", type=Path, required=True, help="folder to place ptbxl/ in")
    download.add_argument("--url", default=None, help="zip URL (default: PhysioNet's PTB-XL 1.0.3)")
    download.set_defaults(handler=_download)

    synth = commands.add_parser("synth", help="write a synthetic dataset in PTB-XL's layout")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--records", type=int, default=DEMO_RECORDS)
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(handler=_synth)

    archs = commands.add_parser("architectures", help="list the registered architectures")
    archs.set_defaults(handler=_architectures)

    params = commands.add_parser("parameters", help="list every run parameter: type, default, range")
    params.set_defaults(handler=_parameters)

    notebooks = commands.add_parser("notebooks", help="copy the notebooks into a folder to open in JupyterLab")
    notebooks.add_argument("dir", type=Path, help="folder to copy them into (created when missing)")
    notebooks.add_argument("--format", choices=("ipynb", "py"), default="ipynb",
                           help="ipynb (default): opens in any JupyterLab; py: the jupytext sources")
    notebooks.add_argument("--force", action="store_true", help="overwrite notebooks already in DIR")
    notebooks.set_defaults(handler=_notebooks)

    study = commands.add_parser("study", help="run architectures x seeds with papermill, then aggregate")
    study.add_argument("--data-dir", type=Path, help=f"PTB-XL folder (default: ${PTBXL_VARIABLE} when set)")
    study.add_argument("--out", type=Path, help="study folder (runs and summary)")
    study.add_argument("--demo", action="store_true",
                       help=f"synthetic data ({DEMO_RECORDS} records, in STUDY_DIR/{DEMO_DATA} unless --data-dir), "
                            f"study in {DEMO_STUDY} unless --out, short settings")
    study.add_argument("--publish", type=Path, metavar="DIR",
                       help="with --demo and its own settings only: copy the summary's tables and figures to DIR "
                            "(make demo: results/demo-synthetic)")
    study.add_argument("--architectures", nargs="+", metavar="NAME",
                       help="names or groups (paper, benchmark, temporal, all; see `ecgkeras architectures`); "
                            "default: paper, the paper's seven")
    study.add_argument("--seeds", nargs="+", type=int, default=[0])
    study.add_argument("--sampling-rate", dest="sampling_rate", type=int, choices=(100, 500))
    study.add_argument("--epochs", type=int)
    study.add_argument("--jobs", type=int, help="runs executed in parallel (default 1; --demo: 2 on 2 or more CPUs)")
    study.add_argument("--external", type=Path, nargs="+", default=[], metavar="DIR",
                       help="validate every run on these labelled datasets too (Challenge format or PTB-XL), shown "
                            "beside the test fold in the summary")
    study.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                       help="run parameter (JSON value), e.g. -p learning_rate 0.0005; see `ecgkeras parameters`")
    study.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                       help="cross a run parameter's values with the architectures, one run folder per cell "
                            "(<architecture>@NAME=V/seed-<k>), e.g. --grid rnn_readout=last,pool; repeat to cross more")
    study.add_argument("--allow-mixed", action="store_true", help="add runs of a different configuration")
    study.add_argument("--from-tuning", type=Path, metavar="STUDY_DIR", help="train each architecture's best "
                       "configuration of `ecgkeras tune --out STUDY_DIR` (default --out and --data-dir: the tuning's)")
    study.add_argument("--list-runs", action="store_true", help="print the grid's run ids and exit")
    _add_execution_arguments(study, "run", "execute only every N-th run of the grid, from the I-th (no aggregation: "
                                           "`ecgkeras aggregate` once all shards are done)")
    study.set_defaults(handler=_study)

    tune = commands.add_parser("tune", help="tune every architecture with the same Optuna budget (validation fold)")
    tune.add_argument("--data-dir", type=Path, required=True, help="PTB-XL folder")
    tune.add_argument("--out", type=Path, required=True, help="study folder: trials go to STUDY_DIR/tuning/")
    tune.add_argument("--architectures", nargs="+", metavar="NAME", help="default: the paper's seven")
    tune.add_argument("--trials", type=int, required=True, help="trials per architecture (the equal budget)")
    tune.add_argument("--space", type=Path, metavar="FILE", help="JSON (or YAML) narrowing or widening the search "
                      "space; see `ecgkeras parameters` for the tunable parameters")
    tune.add_argument("--storage", metavar="URL", help="SQLAlchemy URL of a shared Optuna database (default: a "
                      "journal file in STUDY_DIR/tuning/)")
    tune.add_argument("--sampler-seed", type=int, default=0, help="seed of the TPE sampler, shared by every "
                      "architecture")
    tune.add_argument("--pruner", default="median", help="median (default), hyperband or none")
    tune.add_argument("--jobs", type=int, default=1, help="workers sharing the storage (local processes or SLURM "
                      "array tasks)")
    tune.add_argument("--epochs", type=int)
    tune.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                      help="fixed run parameter for every trial (taken out of the search space)")
    _add_execution_arguments(tune, "worker", "spend only shard I's share (1/N) of every architecture's budget; "
                                             "N shards together spend it exactly")
    tune.set_defaults(handler=_tune)

    status = commands.add_parser("status", help="each run of a study: complete, running, queued, failed, missing")
    status.add_argument("study_dir", type=Path)
    status.set_defaults(handler=_status)

    aggregate = commands.add_parser("aggregate", help="(re)write a study's tables and figures")
    aggregate.add_argument("study_dir", type=Path)
    aggregate.add_argument("--summary-dir", type=Path)
    aggregate.add_argument("--bootstrap-resamples", type=int, default=1000)
    aggregate.set_defaults(handler=_aggregate)

    predict = commands.add_parser("predict", help="diagnostic subclasses of one WFDB record")
    predict.add_argument("--run", type=Path, required=True, help="a complete run folder")
    predict.add_argument("ecg", metavar="RECORD", type=Path, help="the ECG: a WFDB record path (with or without .hea)")
    predict.add_argument("--top", type=positive_int, default=5, help="rows of the probability table to print")
    predict.set_defaults(handler=_predict)

    explain = commands.add_parser("explain", help="12-lead plot of one record with where the model looks")
    explain.add_argument("--run", type=Path, required=True, help="a complete run folder")
    explain.add_argument("ecg", metavar="RECORD", type=Path, help="the ECG: a WFDB record path (with or without .hea)")
    explain.add_argument("--classes", nargs="+", metavar="NAME", help="classes to explain (default: the predicted)")
    explain.add_argument("--out", type=Path, help="figure path, written as .png and .pdf "
                                                  "(default: <record>_explained in this folder)")
    explain.add_argument("--method", help="integrated_gradients, gradient_x_input or grad_cam (default: the "
                                          "most faithful in benchmarks/RESULTS.md)")
    explain.set_defaults(handler=_explain)

    evaluate = commands.add_parser("evaluate", help="external validation of a run on another labelled dataset")
    evaluate.add_argument("--run", type=Path, required=True, help="a complete run folder")
    evaluate.add_argument("--data-dir", type=Path, required=True,
                          help="Challenge-format records (.hea with #Dx, and .mat or .dat) or a PTB-XL folder")
    evaluate.add_argument("--out", type=Path, help="result JSON (default: RUN_DIR/external/<data folder>.json)")
    evaluate.set_defaults(handler=_evaluate)

    tune = commands.add_parser("finetune", help="a new run initialised from a trained run, on another dataset")
    tune.add_argument("--run", type=Path, required=True, help="the parent: a complete run folder")
    tune.add_argument("--data-dir", type=Path, required=True,
                      help="Challenge-format records (.hea with #Dx, and .mat or .dat) or a PTB-XL folder")
    tune.add_argument("--out", type=Path, required=True, help="the new run folder")
    tune.add_argument("--epochs", type=int)
    tune.add_argument("--freeze-epochs", type=int, default=0, help="first epochs with the conv front-end frozen")
    tune.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                      help="run parameter (JSON value) to change, e.g. -p learning_rate 0.0001")
    tune.set_defaults(handler=_finetune)

    report = commands.add_parser("report", help="a static HTML site of a study (opens without a server)")
    report.add_argument("study_dir", type=Path)
    report.add_argument("--out", type=Path, help="site folder (default: <study_dir>/report)")
    report.set_defaults(handler=_report)

    for command in (parser, *commands.choices.values()):  # one flag, before or after the command name
        command.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="show the libraries' start-up messages and stream the notebooks' output")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `ecgkeras` console script."""
    args = build_parser().parse_args(argv)
    args.verbose = getattr(args, "verbose", False)
    if args.verbose:
        quiet.be_verbose()
    else:
        quiet.be_quiet()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not args.verbose:  # what a kernel stopped by Ctrl-C leaves behind: nbclient's and asyncio's reports
        for name in ("asyncio", "traitlets", "papermill"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        args.handler(args)
    except EcgkerasError as exc:
        print(f"ecgkeras: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # a folder the user named cannot be written or read
        where = f" {exc.filename}" if exc.filename else ""
        print(f"ecgkeras: error: cannot use{where}: {exc.strerror or exc}; choose another location", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # also StudyInterrupted, raised once running kernels are stopped
        print("ecgkeras: interrupted; complete runs are kept, rerun the same command to finish the others",
              file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
