"""The one 12-lead ECG plot of the package: the 6 x 2 clinical format (10 s per lead) on ECG grid paper.

Used by the tour (`ecgkeras.report.explore`) and by `ecgkeras explain`, which adds its evidence
strips under each lead through `decorate`.
"""

from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt
import numpy as np

from ecgkeras.data.ptbxl import LEADS

SIX_BY_TWO = (("I", "V1"), ("II", "V2"), ("III", "V3"), ("AVR", "V4"), ("AVL", "V5"), ("AVF", "V6"))
LEAD_LABELS = {"AVR": "aVR", "AVL": "aVL", "AVF": "aVF"}  # PTB-XL's upper-case names as clinicians write them
MINOR_SECONDS, MINOR_MV, MAJOR_SECONDS = 0.2, 0.5, 1.0  # ECG paper's big squares; a labelled line every second
GRID = f"grid {MINOR_SECONDS:g} s x {MINOR_MV:g} mV"

# decorate(ax, lead index, time, low, high) draws extra content under a lead; returns the new lower y limit
Decorate = Callable[[plt.Axes, int, np.ndarray, float, float], float]


def _grid_paper(ax: plt.Axes, seconds: float, low: float, high: float) -> None:
    """The paper as three line collections (drawn in a third of the time of as many minor ticks: 0.7 s a
    12-lead figure instead of 2 s), its labelled ticks every MAJOR_SECONDS."""
    major = np.arange(0, seconds + 1e-9, MAJOR_SECONDS)
    ax.vlines(np.arange(0, seconds + 1e-9, MINOR_SECONDS), low, high, colors="#f4b8b8", linewidth=0.4, zorder=0)
    ax.hlines(np.arange(np.ceil(low / MINOR_MV) * MINOR_MV, high, MINOR_MV), 0, seconds, colors="#f4b8b8",
              linewidth=0.4, zorder=0)
    ax.vlines(major, low, high, colors="#e48a8a", linewidth=0.6, zorder=0)
    ax.set_xticks(major)
    ax.set_facecolor("#fffafa")
    ax.set_xlim(0, seconds)
    ax.set_ylim(low, high)


def plot_ecg(signal: np.ndarray, sampling_rate: int, title: str = "", decorate: Decorate | None = None,
             figsize: tuple[float, float] = (15, 11)) -> plt.Figure:
    """Signal (time, 12 leads in PTB-XL order, mV) as 6 x 2 leads on grid paper; `decorate` adds to each lead."""
    seconds = signal.shape[0] / sampling_rate
    time = np.arange(signal.shape[0]) / sampling_rate
    fig, axes = plt.subplots(6, 2, figsize=figsize, sharex=True)
    for (row, column), ax in np.ndenumerate(axes):
        lead = LEADS.index(SIX_BY_TWO[row][column])
        trace = signal[:, lead]
        low, high = min(trace.min(), -0.5) - 0.2, max(trace.max(), 0.5) + 0.2
        if decorate:
            low = decorate(ax, lead, time, low, high)
        ax.plot(time, trace, color="black", linewidth=0.7, zorder=3)
        _grid_paper(ax, seconds, low, high)
        ax.set_yticks([])
        ax.text(0.005, 0.95, LEAD_LABELS.get(LEADS[lead], LEADS[lead]), transform=ax.transAxes, va="top",
                fontsize=10, fontweight="bold", zorder=4)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    fig.suptitle(title or f"12-lead ECG ({GRID})", fontsize=11)
    fig.tight_layout()
    return fig
