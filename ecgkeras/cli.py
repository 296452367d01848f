"""Command line: `ecgkeras {download,synth,architectures,study,aggregate,predict,explain,report}`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ecgkeras.errors import EcgkerasError

DEMO_DATA = Path("data/synthetic-ptbxl")
DEMO_STUDY = Path("runs/demo")
DEMO_RESULTS = Path("results/demo-synthetic")
DEMO_RECORDS = 1200
# Short settings so the seven paper architectures train in about 10 minutes on 2 CPU cores.
DEMO_PARAMETERS = {"epochs": 20, "batch_size": 32, "patience": 5, "bootstrap_resamples": 200}


def _download(args: argparse.Namespace) -> None:
    from ecgkeras.download import download_ptbxl

    path = download_ptbxl(args.dest, **({"url": args.url} if args.url else {}))
    print(f"PTB-XL ready in {path}; use it with --data-dir {path}")


def _synth(args: argparse.Namespace) -> None:
    from ecgkeras.synthetic import make_synthetic_ptbxl

    path = make_synthetic_ptbxl(args.out, n_records=args.records, seed=args.seed)
    _print_dataset_summary(path)


def _print_dataset_summary(path: Path) -> None:
    from ecgkeras.data import load_ptbxl

    dataset = load_ptbxl(path, progress=False)
    print(f"{path}: {len(dataset.ecg_ids)} records with a subclass label ({dataset.n_dropped} dropped), "
          f"{len(dataset.classes)} classes, signals {dataset.X.shape[1:]}")
    print(dataset.summary().to_string())


def _architectures(args: argparse.Namespace) -> None:
    from ecgkeras.models import ARCHITECTURES, build_model

    print(f"{'name':<15} {'display name':<15} {'paper':<6} {'parameters':>10}   (100 Hz input, 23 classes)")
    for name, arch in ARCHITECTURES.items():
        params = build_model(name, (1000, 12), 23).count_params()
        print(f"{name:<15} {arch.display_name:<15} {'yes' if arch.in_paper else '':<6} {params:>10,}")


def _study(args: argparse.Namespace) -> None:
    from ecgkeras.models import PAPER_ARCHITECTURES
    from ecgkeras.site import REPORT_DIR
    from ecgkeras.study import parse_parameters, publish_summary, run_study

    parameters = parse_parameters(args.param)
    data_dir, out = args.data_dir, args.out
    if args.demo:
        from ecgkeras.synthetic import make_synthetic_ptbxl

        data_dir = make_synthetic_ptbxl(args.data_dir or DEMO_DATA, n_records=DEMO_RECORDS, seed=0)
        out = out or DEMO_STUDY
        parameters = {**DEMO_PARAMETERS, **parameters}
    if data_dir is None or out is None:
        raise EcgkerasError("study needs --data-dir DIR and --out STUDY_DIR (or --demo)")
    for name in ("sampling_rate", "epochs"):
        if getattr(args, name) is not None:
            parameters[name] = getattr(args, name)
    result = run_study(data_dir, out, architectures=args.architectures or PAPER_ARCHITECTURES,
                       seeds=args.seeds, parameters=parameters, jobs=args.jobs, allow_mixed=args.allow_mixed,
                       log_output=args.verbose)
    print(f"study {result.study_dir}: {len(result.completed)} run(s) completed, "
          f"{len(result.skipped)} already complete, {len(result.failed)} failed")
    for run_dir, reason in result.failed.items():
        print(f"  FAILED {run_dir}: {reason}")
    if result.summary_dir:
        print(f"summary (tables and figures): {result.summary_dir}")
        if args.demo:
            print(f"published to {publish_summary(result.summary_dir, DEMO_RESULTS)}")
        print(f"report: open {result.study_dir / REPORT_DIR / 'index.html'} in a browser")
    if result.failed:
        sys.exit(1)


def _aggregate(args: argparse.Namespace) -> None:
    from ecgkeras.site import REPORT_DIR
    from ecgkeras.study import aggregate_study

    print(f"summary: {aggregate_study(args.study_dir, args.summary_dir, args.bootstrap_resamples)}")
    print(f"report: open {args.study_dir.resolve() / REPORT_DIR / 'index.html'} in a browser")


def _predict(args: argparse.Namespace) -> None:
    from ecgkeras.runs import predict_record

    table = predict_record(args.run, args.record)
    predicted = table[table["predicted"]]
    print(f"{args.record}: " + (", ".join(f"{row['class']} ({row['probability']:.2f})"
                                          for _, row in predicted.iterrows()) or "no class above its threshold"))
    print(table.head(args.top).to_string(index=False, float_format="%.3f"))


def _explain(args: argparse.Namespace) -> None:
    from ecgkeras.explain import explain_record, save_explanation

    explanation = explain_record(args.run, args.record, args.classes, args.method)
    paths = save_explanation(explanation, args.out)
    print(f"{args.record}: attribution of {', '.join(explanation.attributions)} ({explanation.method}) "
          f"drawn on the 12 leads: {', '.join(str(path) for path in paths)}")


def _report(args: argparse.Namespace) -> None:
    from ecgkeras.site import write_site

    index = write_site(args.study_dir, args.out)
    print(f"report: open {index} in a browser")


def build_parser() -> argparse.ArgumentParser:
    """The `ecgkeras` argument parser."""
    parser = argparse.ArgumentParser(prog="ecgkeras", description=__doc__)
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

    study = commands.add_parser("study", help="run architectures x seeds with papermill, then aggregate")
    study.add_argument("--data-dir", type=Path, help="PTB-XL folder")
    study.add_argument("--out", type=Path, help="study folder (runs and summary)")
    study.add_argument("--demo", action="store_true",
                       help=f"synthetic data in {DEMO_DATA}, study in {DEMO_STUDY}, short settings")
    study.add_argument("--architectures", nargs="+", metavar="NAME", help="default: the paper's seven")
    study.add_argument("--seeds", nargs="+", type=int, default=[0])
    study.add_argument("--sampling-rate", dest="sampling_rate", type=int, choices=(100, 500))
    study.add_argument("--epochs", type=int)
    study.add_argument("--jobs", type=int, default=1, help="runs executed in parallel")
    study.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                       help="notebook parameter (JSON value), e.g. -p learning_rate 0.0005")
    study.add_argument("--allow-mixed", action="store_true", help="add runs of a different configuration")
    study.add_argument("--verbose", action="store_true", help="stream the notebooks' output")
    study.set_defaults(handler=_study)

    aggregate = commands.add_parser("aggregate", help="(re)write a study's tables and figures")
    aggregate.add_argument("study_dir", type=Path)
    aggregate.add_argument("--summary-dir", type=Path)
    aggregate.add_argument("--bootstrap-resamples", type=int, default=1000)
    aggregate.set_defaults(handler=_aggregate)

    predict = commands.add_parser("predict", help="diagnostic subclasses of one WFDB record")
    predict.add_argument("--run", type=Path, required=True, help="a complete run folder")
    predict.add_argument("record", type=Path, help="WFDB record path (with or without .hea)")
    predict.add_argument("--top", type=int, default=5, help="rows of the probability table to print")
    predict.set_defaults(handler=_predict)

    explain = commands.add_parser("explain", help="12-lead plot of one record with where the model looks")
    explain.add_argument("--run", type=Path, required=True, help="a complete run folder")
    explain.add_argument("record", type=Path, help="WFDB record path (with or without .hea)")
    explain.add_argument("--classes", nargs="+", metavar="NAME", help="classes to explain (default: the predicted)")
    explain.add_argument("--out", type=Path, help="figure path, written as .png and .pdf "
                                                  "(default: <record>_explained in this folder)")
    explain.add_argument("--method", help="integrated_gradients, gradient_x_input or grad_cam (default: the "
                                          "most faithful in benchmarks/RESULTS.md)")
    explain.set_defaults(handler=_explain)

    report = commands.add_parser("report", help="a static HTML site of a study (opens without a server)")
    report.add_argument("study_dir", type=Path)
    report.add_argument("--out", type=Path, help="site folder (default: <study_dir>/report)")
    report.set_defaults(handler=_report)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `ecgkeras` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except EcgkerasError as exc:
        print(f"ecgkeras: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
