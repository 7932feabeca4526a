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
