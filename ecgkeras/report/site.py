"""A study as a static HTML site that opens from the file system (no server, no script, no network).

`write_site(study_dir)` writes `<study_dir>/report/`:
  index.html                 the summary's paper-style tables and figures, its notes (README.md),
                             every run with its headline metrics, every executed notebook
  run-<architecture>-seed-<k>.html   one page per run: configuration, metrics with 95% intervals,
                             learning curve, per-class table, timings and library versions
  figures/  tables/  notebooks/      the summary's figures and tables, learning curves, and the
                             executed notebooks rendered to HTML by nbconvert
Everything is read from the run records and the summary folder written by aggregation; Markdown
(tables, the README) goes through a small converter that escapes all text first.
"""

from __future__ import annotations

import html
import logging
import re
import shutil
from pathlib import Path
from typing import Iterable

import matplotlib.pyplot as plt
import pandas as pd

from ecgkeras.errors import EcgkerasError
from ecgkeras.evaluation import HEADLINE_METRICS
from ecgkeras.files import atomic_write_text, check_replaceable, replaced_folder
from ecgkeras.report.figures import plot_history
from ecgkeras.report.formatting import LABELS
from ecgkeras.runs.config import POLICIES, TUNED
from ecgkeras.runs.record import RunRecord, find_runs
from ecgkeras.study.layout import REPORT_DIR, REPORT_KIND, SUMMARY_DIR, VERDICT_FILE

# Summary tables shown on the index, in this order, with their headings.
SUMMARY_TABLES = {"results_tuned": "Test-fold results, validation-tuned thresholds",
                  "results_fixed": "Test-fold results, fixed threshold 0.5",
                  "paired_comparison": "Paired comparison against the best architecture (all seeds, Holm)",
                  "per_class_recall": "Per-class recall (test fold, tuned thresholds)",
                  "tuning": "Tuning: each architecture's recipe and chosen parameters",
                  "external": "External validation beside the test fold (shared classes, tuned thresholds)"}
# nbconvert's lab template without the two scripts it loads from a CDN (require.js, MathJax): the
# pages then need no network; the notebooks hold no widgets or LaTeX that would need them.
OFFLINE_NOTEBOOK_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{% block html_head_js_requirejs %}{% endblock %}
{% block html_head_js_mathjax %}{% endblock %}"""
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1d2327; line-height: 1.45; }
h1 { border-bottom: 2px solid #2271b1; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #dcdcde; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }
th, td { border: 1px solid #dcdcde; padding: .25rem .6rem; }
th { background: #f0f6fc; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
blockquote { border-left: 4px solid #d63638; background: #fcf0f1; margin: 1rem 0; padding: .5rem 1rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #dcdcde; }
figcaption { font-size: .9rem; color: #50575e; }
code { background: #f6f7f7; padding: 0 .2rem; }
nav { font-size: .9rem; margin-bottom: 1rem; }
"""


# --------------------------------------------------------------------------- safe Markdown

def _inline(text: str) -> str:
    """Escaped text with `code`, **bold** and *italic* turned into tags."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(?<![*\w])\*([^*\s][^*]*?)\*(?![*\w])", r"<em>\1</em>", text)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table(lines: list[str]) -> str:
    header, rules, body = _cells(lines[0]), _cells(lines[1]) if len(lines) > 1 else [], lines[2:]
    numeric = [rule.endswith(":") and not rule.startswith(":") for rule in rules] + [False] * len(header)
    rows = ["<tr>" + "".join(f"<th>{_inline(cell)}</th>" for cell in header) + "</tr>"]
    for line in body:
        rows.append("<tr>" + "".join(f"<td{' class=num' if numeric[i] else ''}>{_inline(cell)}</td>"
                                     for i, cell in enumerate(_cells(line))) + "</tr>")
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def markdown_to_html(text: str, heading_offset: int = 0) -> str:
    """The Markdown the summary writes (headings, paragraphs, lists, quotes, pipe tables) as HTML.

    All text is escaped first: nothing in a file can inject markup or script.
    """
    blocks: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        kind = ("table" if line.lstrip().startswith("|") else "list" if line.startswith("- ")
                else "quote" if line.startswith(">") else "heading" if line.startswith("#") else "text")
        group = [line]
        i += 1
        while kind != "heading" and i < len(lines) and lines[i].strip() and not lines[i].startswith("#"):
            follows = ("table" if lines[i].lstrip().startswith("|") else "list" if lines[i].startswith("- ")
                       else "quote" if lines[i].startswith(">") else "text")
            if follows != kind:
                break
            group.append(lines[i])
            i += 1
        if kind == "heading":
            level = min(len(line) - len(line.lstrip("#")) + heading_offset, 6)
            blocks.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
        elif kind == "table":
            blocks.append(_table(group))
        elif kind == "list":
            blocks.append("<ul>" + "".join(f"<li>{_inline(item[2:])}</li>" for item in group) + "</ul>")
        elif kind == "quote":
            blocks.append("<blockquote>" + _inline(" ".join(g.lstrip("> ").strip() for g in group)) + "</blockquote>")
        else:
            blocks.append(f"<p>{_inline(' '.join(group))}</p>")
    return "\n".join(blocks)


def _page(title: str, body: str, back: bool = True) -> str:
    nav = '<nav><a href="index.html">&larr; study report</a></nav>\n' if back else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{nav}<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n")


def _frame_html(frame: pd.DataFrame, decimals: int = 4) -> str:
    """A DataFrame as an escaped HTML table, numbers right-aligned."""
    def cell(value) -> str:
        if isinstance(value, float):
            return f"<td class=num>{'–' if pd.isna(value) else f'{value:.{decimals}f}'}</td>"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"<td class=num>{value:,}</td>"
        return f"<td>{html.escape(str(value))}</td>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>\n" for row in frame.itertuples(index=False))
    return f"<table>\n<tr>{head}</tr>\n{rows}</table>"


# --------------------------------------------------------------------------- pages

def _slug(run: RunRecord, study_dir: Path) -> str:
    relative = run.run_dir.resolve().relative_to(study_dir.resolve())
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(relative.parts)) or "run"


def _flatten(values: dict, prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def _key_value_table(values: dict) -> str:
    return _frame_html(pd.DataFrame(list(_flatten(values).items()), columns=["name", "value"]))


def _metrics_table(run: RunRecord) -> str:
    rows = []
    for metric in HEADLINE_METRICS:
        row = {"metric": LABELS.get(metric, metric)}
        for policy in POLICIES:
            value = run.metrics("test", policy).get(metric)
            interval = run.intervals(policy).get(metric)
            row[f"test, {policy}"] = "–" if value is None else f"{value:.4f}" + (
                f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "")
            validation = run.metrics("val", policy).get(metric)
            row[f"validation, {policy}"] = "–" if validation is None else f"{validation:.4f}"
        rows.append(row)
    return _frame_html(pd.DataFrame(rows))


def _learning_curve(run: RunRecord, out_dir: Path, slug: str) -> str:
    fig = plot_history(run.history)
    try:
        fig.savefig(out_dir / "figures" / f"{slug}-history.png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return (f'<figure><img src="figures/{slug}-history.png" alt="learning curve of {html.escape(slug)}">'
            "<figcaption>Loss and Keras macro-AUPRC per epoch on training and validation; dashed: the best "
            "epoch (kept).</figcaption></figure>")


def _run_page(run: RunRecord, study_dir: Path, out_dir: Path, notebook: str | None) -> str:
    slug = _slug(run, study_dir)
    title = f"{run.display_name}, seed {run.seed}"
    per_class = run.per_class("test", TUNED).reset_index()
    parts = [f"<p>Run folder <code>{html.escape(str(run.run_dir))}</code>"
             + (f' · <a href="{notebook}">executed training notebook</a>' if notebook else "") + "</p>",
             "<h2>Metrics</h2><p>Test fold with 95% bootstrap intervals; validation fold for comparison. "
             "<em>tuned</em>: per-class thresholds maximizing F1 on the validation fold; <em>fixed</em>: 0.5.</p>",
             _metrics_table(run), "<h2>Learning curve</h2>", _learning_curve(run, out_dir, slug),
             "<h2>Per-class results (test fold, tuned thresholds)</h2>", _frame_html(per_class, 3),
             "<h2>Configuration</h2>", _key_value_table(run.config.to_dict())]
    for heading, values in {"Data": run.data, "Provenance": run.provenance, "Timings": run.timings,
                            "Execution": run.execution, "Library versions": run.versions}.items():
        parts += [f"<h2>{heading}</h2>", _key_value_table(values)]
    atomic_write_text(out_dir / f"run-{slug}.html", _page(title, "\n".join(parts)))
    return f"run-{slug}.html"


def _render_notebooks(study_dir: Path, out_dir: Path) -> dict[Path, str]:
    """Every executed notebook under the study, rendered by nbconvert; {notebook: site link}."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    quiet_log = logging.getLogger(f"{__name__}.nbconvert")  # not its per-notebook note on plots without alt text
    quiet_log.setLevel(logging.ERROR)
    exporter = HTMLExporter(embed_images=True, template_file="offline.html.j2", log=quiet_log,
                            extra_loaders=[DictLoader({"offline.html.j2": OFFLINE_NOTEBOOK_TEMPLATE})])
    links = {}
    for notebook in sorted(study_dir.rglob("*.ipynb")):
        relative = notebook.relative_to(study_dir)
        if REPORT_DIR in relative.parts[:1] or any(part.startswith(".") for part in relative.parts[:-1]):
            continue
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(relative.with_suffix("").parts)) + ".html"
        try:
            body, _ = exporter.from_filename(str(notebook))
        except Exception as exc:  # nbformat raises several types on a broken file
            raise EcgkerasError(f"cannot render {notebook} ({type(exc).__name__}: {exc}): rerun that "
                                "run or delete the broken notebook") from exc
        atomic_write_text(out_dir / "notebooks" / name, body)
        links[notebook] = f"notebooks/{name}"
    return links


def _summary_sections(summary_dir: Path, out_dir: Path) -> str:
    """The summary's tables (Markdown, linked to the CSV/LaTeX copies) and figures."""
    parts = ['<span id="results"></span>']
    for stem, heading in SUMMARY_TABLES.items():
        source = summary_dir / f"{stem}.md"
        if not source.is_file():
            continue
        copies = [f'<a href="tables/{stem}{ext}">{ext[1:]}</a>' for ext in (".csv", ".md", ".tex")
                  if (out_dir / "tables" / f"{stem}{ext}").is_file()]
        parts += [f"<h2>{heading}</h2>", markdown_to_html(source.read_text()),
                  f"<p>Download: {' · '.join(copies)}</p>"]
    figures = sorted(summary_dir.glob("*.png"))
    if figures:
        parts.append('<h2 id="figures">Figures</h2>')
    for figure in figures:
        pdf = (f' · <a href="figures/{figure.stem}.pdf">PDF</a>' if (out_dir / "figures" / f"{figure.stem}.pdf").is_file()
               else "")
        parts.append(f'<figure><img src="figures/{figure.name}" alt="{html.escape(figure.stem)}">'
                     f"<figcaption>{html.escape(figure.stem.replace('_', ' '))}{pdf}</figcaption></figure>")
    return "\n".join(parts)


def _copy_summary_files(summary_dir: Path, out_dir: Path) -> None:
    for path in summary_dir.iterdir():
        if path.suffix in {".png", ".pdf"}:
            shutil.copy2(path, out_dir / "figures" / path.name)
        elif path.suffix in {".csv", ".md", ".tex"} and path.name != "README.md":
            shutil.copy2(path, out_dir / "tables" / path.name)


def _runs_table(runs: Iterable[RunRecord], pages: dict[Path, str], notebooks: dict[Path, str]) -> str:
    rows = []
    for run in runs:
        metrics = run.metrics("test", TUNED)
        notebook = next((link for path, link in notebooks.items() if path.parent == run.run_dir), None)
        cells = [f'<td><a href="{pages[run.run_dir]}">{html.escape(run.display_name)}</a></td>',
                 f"<td class=num>{run.config.seed}</td>"]
        cells += [f"<td class=num>{metrics[m]:.4f}</td>" for m in ("macro_auprc", "micro_f1", "macro_auroc")]
        cells.append(f'<td><a href="{notebook}">notebook</a></td>' if notebook else "<td>–</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th>{name}</th>" for name in ("run", "seed", "macro-AUPRC", "micro-F1", "macro-AUROC",
                                                       "executed notebook"))
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>"


def write_site(study_dir: str | Path, out_dir: str | Path | None = None,
               summary_dir: str | Path | None = None) -> Path:
    """Write the study's static HTML report (default `<study_dir>/report`); returns its index.html.

    `out_dir` must be missing, empty or a report ecgkeras wrote (`ecgkeras.files.replaced_folder`):
    the site is built beside it and swapped in whole, so an old report stays intact until the new
    one is complete.
    """
    study_dir = Path(study_dir).resolve()
    if not study_dir.is_dir():
        raise EcgkerasError(f"study folder not found: {study_dir}")
    out_dir = Path(out_dir).resolve() if out_dir else study_dir / REPORT_DIR
    check_replaceable(out_dir, REPORT_KIND, "--out")
    runs = find_runs(study_dir)
    if not runs:
        raise EcgkerasError(f"no complete run in {study_dir}: run `ecgkeras study` first")
    summary_dir = Path(summary_dir).resolve() if summary_dir else study_dir / SUMMARY_DIR
    if not (summary_dir / "README.md").is_file():
        raise EcgkerasError(f"{summary_dir} holds no study summary: run `ecgkeras aggregate {study_dir}` first")
    with replaced_folder(out_dir, REPORT_KIND, "--out") as staging:
        for folder in ("figures", "tables", "notebooks"):
            (staging / folder).mkdir()
        _copy_summary_files(summary_dir, staging)
        notebooks = _render_notebooks(study_dir, staging)
        pages = {run.run_dir: _run_page(run, study_dir, staging, next(
            (link for path, link in notebooks.items() if path.parent == run.run_dir), None)) for run in runs}
        readme = (summary_dir / "README.md").read_text()
        notes = [line for line in readme.splitlines() if line.startswith(">")]
        verdict = summary_dir / VERDICT_FILE
        body = "\n".join([
            markdown_to_html("\n".join(notes)),
            markdown_to_html(verdict.read_text()) if verdict.is_file() else "",
            f"<p>Study folder <code>{html.escape(str(study_dir))}</code>: {len(runs)} complete run(s). "
            "This page opens from the file system; every table and figure links to its file.</p>",
            '<nav>Contents: <a href="#results">results</a> · <a href="#figures">figures</a> · '
            '<a href="#runs">runs</a> · <a href="#notebooks">executed notebooks</a> · <a href="#notes">notes</a></nav>',
            _summary_sections(summary_dir, staging),
            '<h2 id="runs">Runs</h2><p>Test fold, tuned thresholds; each run\'s page has its configuration, intervals, '
            'learning curve and per-class table.</p>', _runs_table(runs, pages, notebooks),
            '<h2 id="notebooks">Executed notebooks</h2><ul>'
            + "".join(f'<li><a href="{link}">{html.escape(str(path.relative_to(study_dir)))}</a></li>'
                      for path, link in notebooks.items()) + "</ul>",
            '<h2 id="notes">Notes (summary README)</h2>', markdown_to_html(readme, heading_offset=1)])
        atomic_write_text(staging / "index.html", _page(f"Study report: {study_dir.name}", body, back=False))
    return out_dir / "index.html"
