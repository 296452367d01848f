"""ecgkeras.report.ecg: the 12 leads in the clinical 6 x 2 format on ECG grid paper, with room under each
lead for what `decorate` adds."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from ecgkeras.data.ptbxl import LEADS
from ecgkeras.report.ecg import GRID, plot_ecg


def _grid_lines(ax: plt.Axes) -> tuple[set[float], set[float]]:
    """The x of the vertical and the y of the horizontal grid lines of `ax`, rounded to 1e-6."""
    vertical, horizontal = set(), set()
    for collection in ax.collections:
        for (x0, y0), (x1, y1) in collection.get_segments():
            if x0 == x1:
                vertical.add(round(x0, 6))
            elif y0 == y1:
                horizontal.add(round(y0, 6))
    return vertical, horizontal


def test_the_12_leads_are_drawn_6_by_2_on_grid_paper_with_room_for_the_decoration():
    signal = np.zeros((1000, 12), dtype=np.float32)
    signal[:, LEADS.index("V1")] = np.linspace(-2.0, 3.0, 1000)  # 5 mV of V1
    decorated = []

    def decorate(ax, lead, time, low, high):
        decorated.append(LEADS[lead])
        assert time[-1] == pytest.approx(9.99)
        return low - 1.0  # one more mV under the lead

    fig = plot_ecg(signal, 100, decorate=decorate)
    axes = np.array(fig.axes).reshape(6, 2)
    assert [[ax.texts[0].get_text() for ax in row] for row in axes] == [
        ["I", "V1"], ["II", "V2"], ["III", "V3"], ["aVR", "V4"], ["aVL", "V5"], ["aVF", "V6"]]
    assert sorted(decorated) == sorted(LEADS)
    v1, lead_i = axes[0, 1], axes[0, 0]
    np.testing.assert_array_equal(v1.lines[0].get_ydata(), signal[:, LEADS.index("V1")])
    assert v1.get_xlim() == (0, 10)
    assert v1.get_ylim() == pytest.approx((-2.0 - 0.2 - 1.0, 3.0 + 0.2))  # the trace, a margin, the decoration
    assert lead_i.get_ylim() == pytest.approx((-0.7 - 1.0, 0.7))  # at least +-0.5 mV of paper
    vertical, horizontal = _grid_lines(lead_i)
    assert vertical == {round(0.2 * step, 6) for step in range(51)}  # every 0.2 s (and every second)
    assert horizontal == {-1.5, -1.0, -0.5, 0.0, 0.5}  # every 0.5 mV
    assert list(axes[-1, 0].get_xticks()) == list(range(11)) and axes[-1, 0].get_xlabel() == "time (s)"
    assert GRID in fig._suptitle.get_text()
    plt.close(fig)
