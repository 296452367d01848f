"""Tables for people: "mean ± std" strings, best values bold, saved as CSV, Markdown and LaTeX.

Markdown and LaTeX are written here (LaTeX tables use booktabs); "±" appears only when an
architecture has more than one seed; the best value of each headline-metric column is
marked (lowest Hamming loss, highest for the others).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ecgkeras.errors import EcgkerasError
from ecgkeras.evaluation import LOWER_IS_BETTER, TABLE_METRICS
from ecgkeras.files import atomic_write_text

LABELS: dict[str, str] = {
    "hamming_loss": "Hamming loss", "macro_auprc": "macro-AUPRC", "micro_f1": "micro-F1",
    "subset_accuracy": "subset accuracy", "macro_auroc": "macro-AUROC", "macro_f1": "macro-F1",
    "n_parameters": "parameters", "seconds_per_epoch": "seconds/epoch",
    "inference_ms_per_ecg": "inference ms/ECG", "n_seeds": "seeds", "architecture": "Architecture",
    "reference": "reference", "reference_seed": "reference seed", "ci_low": "CI low",
    "ci_high": "CI high", "brier_score": "Brier score", "ece": "ECE", "converged": "converged",
}
DECIMALS: dict[str, int] = {"seconds_per_epoch": 1, "inference_ms_per_ecg": 2}


# Tables hold registry names (`architecture`, `reference`) beside display names; people see the display names.
DISPLAY_NAMES = {"architecture": "display_name", "reference": "reference_display_name"}


def for_people(table: pd.DataFrame) -> pd.DataFrame:
    """The table with display names in place of registry names (index or columns) and no display columns."""
    table = table.copy()
    if table.index.name in DISPLAY_NAMES and DISPLAY_NAMES[table.index.name] in table:
        table.index = pd.Index(table.pop(DISPLAY_NAMES[table.index.name]), name=table.index.name)
    for column, display in DISPLAY_NAMES.items():
        if column in table and display in table:
            table[column] = table.pop(display)
    return table


def _shown_columns(table: pd.DataFrame) -> list[str]:
    """Columns of a table as displayed: `<metric>_std` merges into `<metric>`."""
    return [c for c in table.columns if not (c.endswith("_std") and c.removesuffix("_std") in table.columns)]


def _format_value(value, decimals: int) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if pd.isna(value):
        return "–"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{decimals}f}"
    return str(value)


def _escape_latex(text: str) -> str:
    special = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(special.get(char, char) for char in text).replace("±", r"$\pm$").replace("–", "--")


def _best_mask(values: pd.Series, metric: str, decimals: int) -> pd.Series:
    rounded = values.astype(float).round(decimals)
    return rounded == (rounded.min() if metric in LOWER_IS_BETTER else rounded.max())


def format_table(table: pd.DataFrame, decimals: int = 4, markup: str = "markdown",
                 mark_best: bool = True) -> pd.DataFrame:
    """Strings for display: "mean ± std" (± only with more than one seed), best values bold.

    `markup` is "markdown" (**x**) or "latex" (\\textbf{x}, text escaped). Works on any table
    of this module; best values are marked in metric columns (headline and calibration) only.
    """
    if markup not in ("markdown", "latex"):
        raise EcgkerasError(f"unknown markup {markup!r}: choose markdown or latex")
    table = for_people(table)
    escape = _escape_latex if markup == "latex" else (lambda text: text.replace("|", r"\|"))
    bold = (lambda text: rf"\textbf{{{text}}}") if markup == "latex" else (lambda text: f"**{text}**")
    several_seeds = table["n_seeds"] > 1 if "n_seeds" in table else pd.Series(True, index=table.index)
    formatted = {}
    for column in _shown_columns(table):
        digits = DECIMALS.get(column, decimals)
        values = table[column].map(lambda value: LABELS.get(value, value)) if column == "metric" else table[column]
        text = values.map(lambda value: _format_value(value, digits))
        if f"{column}_std" in table:
            std = table[f"{column}_std"]
            with_std = several_seeds & std.notna()
            text = text.where(~with_std, text + " ± " + std.map(lambda value: _format_value(value, digits)))
        text = text.map(escape)
        if mark_best and column in TABLE_METRICS:
            text = text.where(~_best_mask(table[column], column, digits), text.map(bold))
        formatted[escape(LABELS.get(column, column))] = text
    result = pd.DataFrame(formatted).set_axis(table.index.map(lambda value: escape(str(value))))
    if table.index.name is not None:
        result.index.name = escape(LABELS.get(table.index.name, table.index.name))
    return result


def save_table(table: pd.DataFrame, out_dir: str | Path, stem: str, decimals: int = 4) -> list[Path]:
    """Write `<stem>.csv` (numbers as they are), `<stem>.md` and `<stem>.tex` (formatted)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    named_index = table.index.name is not None
    shown = for_people(table)
    numeric = [pd.api.types.is_numeric_dtype(shown[c]) and not pd.api.types.is_bool_dtype(shown[c])
               for c in _shown_columns(shown)]
    alignment = "l" * named_index + "".join("r" if is_number else "l" for is_number in numeric)
    paths = [out_dir / f"{stem}.{ext}" for ext in ("csv", "md", "tex")]
    atomic_write_text(paths[0], table.to_csv(index=named_index))

    def formatted(markup: str) -> pd.DataFrame:  # the named index becomes the first column
        frame = format_table(table, decimals, markup)
        return frame.reset_index() if named_index else frame

    atomic_write_text(paths[1], formatted("markdown").to_markdown(index=False) + "\n")
    atomic_write_text(paths[2], formatted("latex").to_latex(index=False, escape=False, column_format=alignment))
    return paths
