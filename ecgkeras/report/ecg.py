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
GRID = "grid 0.2 s x 0.5 mV"

# decorate(ax, lead index, time, low, high) draws extra content under a lead; returns the new lower y limit
Decorate = Callable[[plt.Axes, int, np.ndarray, float, float], float]


def _grid_paper(ax: plt.Axes, seconds: float, low: float, high: float) -> None:
    """The grid (minor lines every 0.2 s and 0.5 mV, major every second) as three line collections: a
    third of the time of as many minor ticks (2 s a figure: most of a tour of five ECGs)."""
    ax.vlines(np.arange(0, seconds + 1e-9, 0.2), low, high, colors="#f4b8b8", linewidth=0.4, zorder=0)
    ax.hlines(np.arange(np.ceil(low * 2) / 2, high, 0.5), 0, seconds, colors="#f4b8b8", linewidth=0.4, zorder=0)
    ax.vlines(np.arange(0, seconds + 1e-9, 1.0), low, high, colors="#e48a8a", linewidth=0.6, zorder=0)
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
        ax.set_xticks(np.arange(0, seconds + 1e-9, 1.0))
        ax.set_yticks([])
        ax.text(0.005, 0.95, LEAD_LABELS.get(LEADS[lead], LEADS[lead]), transform=ax.transAxes, va="top",
                fontsize=10, fontweight="bold", zorder=4)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    fig.suptitle(title or f"12-lead ECG ({GRID})", fontsize=11)
    fig.tight_layout()
    return fig
