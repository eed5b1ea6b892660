"""training.png's axes: round ticks a person can read, and a legend that stays off the lines."""

import math

import numpy as np
import pytest
from PIL import Image

from vmcli.plots import COLOURS, _label, line_chart, nice_ticks


@pytest.mark.parametrize(
    "lo, hi, integer, expected",
    [
        (1, 10, True, [2, 4, 6, 8, 10]),  # epochs: whole numbers, never 3.25
        (1, 13, True, [2, 4, 6, 8, 10, 12]),  # not just 5 and 10
        (-0.249, 5.69, False, [0, 1, 2, 3, 4, 5]),
        (4.58, 5.7, False, [4.75, 5.0, 5.25, 5.5]),
        (0, 0.3, False, [0.0, 0.1, 0.2, 0.3]),
        (-0.249, 0.3, False, [-0.2, -0.1, 0.0, 0.1, 0.2, 0.3]),
    ],
)
def test_ticks_are_round_and_cover_the_range(lo, hi, integer, expected):
    ticks = nice_ticks(lo, hi, integer=integer)
    assert ticks == pytest.approx(expected)
    assert all(lo <= t <= hi for t in ticks)
    assert all(math.copysign(1, t) == 1 for t in ticks if t == 0)  # no "-0"


def test_labels_carry_the_decimals_the_spacing_needs():
    assert [_label(v, 0.25) for v in (4.5, 4.75)] == ["4.50", "4.75"]
    assert _label(2.0, 2.0) == "2" and _label(0.1, 0.1) == "0.1"


def test_a_degenerate_range_still_draws():
    assert nice_ticks(3.0, 3.0) == [3.0]
    img = line_chart({"flat": [(1.0, 2.0), (2.0, 2.0)]}, "t", "epoch")
    assert img.size == (560, 300)


def test_the_legend_sits_above_the_plot_area():
    """Legend rows are drawn in a band under the title; the plot frame starts below them."""
    series = {f"s{i}": [(0.0, 0.0), (1.0, 1.0)] for i in range(3)}
    rgb = np.asarray(line_chart(series, "", "x"))
    img = np.asarray(Image.fromarray(rgb).convert("L"))
    frame_rows = np.where((img[:, 100:500] == 170).mean(axis=1) > 0.9)[0]
    top_of_frame = frame_rows.min()
    assert top_of_frame >= 30 + 13 * 3  # below three legend rows
    for colour in COLOURS[:3]:  # each series' legend entry is drawn in that band
        rows = np.where((rgb == colour).all(axis=2))[0]
        assert rows.min() < top_of_frame
