"""Looking at the data: fold counts, the label hierarchy, imbalance, co-occurrence, 12-lead plots."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ecgkeras.data.ptbxl import PTBXL, read_statements

# Clinical 12-lead layout: 3 rows x 4 columns of 2.5 s strips.


def fold_counts(dataset: PTBXL) -> pd.DataFrame:
    """Records per `strat_fold`, with the split each fold belongs to."""
    split_of = {fold: name for name, folds in dataset.split_folds.items() for fold in folds}
    counts = pd.Series(dataset.folds).value_counts().sort_index()
    return pd.DataFrame({"records": counts, "split": [split_of[f] for f in counts.index]},
                        index=pd.Index(counts.index, name="strat_fold"))


def label_hierarchy(data_dir) -> pd.DataFrame:
    """Diagnostic superclass -> subclass -> SCP codes, from `scp_statements.csv`."""
    statements = read_statements(data_dir)
    diagnostic = statements[statements["diagnostic"] == 1].rename_axis("code").reset_index()
    return (diagnostic.groupby(["diagnostic_class", "diagnostic_subclass"])["code"]
            .agg(lambda codes: ", ".join(sorted(codes))).rename("scp_codes").to_frame())


def cooccurrence(dataset: PTBXL) -> pd.DataFrame:
    """Records carrying both classes (diagonal: records per class)."""
    Y = dataset.Y.astype(np.int64)
    return pd.DataFrame(Y.T @ Y, index=dataset.classes, columns=dataset.classes)


def plot_class_counts(dataset: PTBXL) -> plt.Figure:
    """Records per class, log scale, split by train/validation/test."""
    counts = dataset.summary().reset_index().melt(id_vars="class", var_name="split", value_name="records")
    fig, ax = plt.subplots(figsize=(11, 4))
    sns.barplot(counts, x="class", y="records", hue="split", ax=ax)
    ax.set_yscale("log")
    ax.set_title("Class imbalance: records per diagnostic class and split")
    ax.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    return fig


def plot_cooccurrence(dataset: PTBXL) -> plt.Figure:
    """Heatmap of label co-occurrence, as a share of the row class's records."""
    counts = cooccurrence(dataset)
    share = counts.div(np.maximum(np.diag(counts), 1), axis=0)
    fig, ax = plt.subplots(figsize=(9, 8))
    sns.heatmap(share, cmap="rocket_r", vmin=0, vmax=1, square=True, ax=ax,
                cbar_kws={"label": "share of row class's records"})
    ax.set_title("Label co-occurrence P(column | row)")
    fig.tight_layout()
    return fig


def example_ecgs(dataset: PTBXL, classes: list[str]) -> dict[str, int]:
    """The first record of each listed class that carries only that class (else any record of it)."""
    examples = {}
    for name in classes:
        column = dataset.classes.index(name)
        has = dataset.Y[:, column] == 1
        only = has & (dataset.Y.sum(axis=1) == 1)
        candidates = np.flatnonzero(only if only.any() else has)
        if len(candidates):
            examples[name] = int(candidates[0])
    return examples
