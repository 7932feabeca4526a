"""Figures that a run with unusual parameters still draws."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from infcore import plots
from infcore.stability import METRICS


def test_stability_points_with_a_single_perturbation():
    rng = np.random.default_rng(0)
    pairs = pd.DataFrame({"method": ["grad_dot", "grad_cos"] * 2, "perturbation": ["ordering"] * 4,
                          **{metric: rng.random(4) for metric in METRICS}})
    fig = plots.stability_points(pairs, hue="perturbation", hue_order=["ordering"])
    assert len(fig.axes) == len(METRICS)
    plt.close(fig)


def test_stability_points_mark_the_paper_and_the_chance_overlap():
    rng = np.random.default_rng(0)
    pairs = pd.DataFrame({"method": ["grad_dot", "grad_cos"] * 2,
                          "perturbation": ["ordering", "ordering", "initialization", "initialization"],
                          **{metric: rng.random(4) for metric in METRICS}})
    theirs = pd.DataFrame({"method": ["grad_dot", "grad_cos"] * 3,
                           "metric": ["pearson"] * 2 + ["spearman"] * 2 + ["top_overlap"] * 2,
                           "value": [0.9, 0.95, 0.8, 0.85, 70.0, 60.0]})
    fig = plots.stability_points(pairs, hue="perturbation", paper=theirs, title="quick run: 4 / 2")
    overlap = fig.axes[METRICS.index("top_overlap")]
    assert [line.get_xdata()[0] for line in overlap.get_lines()
            if line.get_linestyle() == ":"] == [plots.CHANCE_OVERLAP]
    # one cross per method and metric, on its method's row
    crosses = [c.get_offsets() for ax in fig.axes for c in ax.collections if c.get_offsets().shape[0] == 2
               and c.get_offsets()[:, 0].max() in (0.95, 0.85, 70.0)]
    assert len(crosses) == 3
    assert fig._suptitle.get_text() == "quick run: 4 / 2"
    plt.close(fig)
