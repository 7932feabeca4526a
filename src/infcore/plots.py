"""The book's figures, drawn with seaborn and matplotlib. Each function returns a new Figure; the caller glues and closes it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from infcore.toys import ChairInfluence


def chair_fits(
    chairs: np.ndarray,
    result: ChairInfluence,
    leave_out: int,
    test_point: tuple[float, float],
) -> plt.Figure:
    """The chairs, the fitted lines with and without one chair, and the test chair.

    Parameters
    ----------
    chairs : array of shape (n, 2)
        Columns are (weight, height).
    result : ChairInfluence
        Output of :func:`infcore.toys.chair_influence` for the same chairs.
    leave_out : int
        Row of the chair that was left out (drawn with its own marker).
    test_point : (weight, height)
        The test chair.
    """
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(6, 4))
    kept = np.delete(chairs, leave_out, axis=0)
    ax.scatter(kept[:, 0], kept[:, 1], color="C0", s=60, label="chairs", zorder=3)
    ax.scatter(*chairs[leave_out], color="C3", s=90, marker="D", label=f"left-out chair {leave_out}",
               zorder=3)
    ax.scatter(*test_point, color="k", s=120, marker="*", label="test chair", zorder=3)
    grid = np.linspace(min(chairs[:, 0].min(), test_point[0]) - 0.5,
                       max(chairs[:, 0].max(), test_point[0]) + 0.5, 100)
    ax.plot(grid, result.full.predict(grid), color="C0",
            label=f"all chairs: slope {result.full.slope:.2f}")
    ax.plot(grid, result.without.predict(grid), color="C3", linestyle="--",
            label=f"without chair {leave_out}: slope {result.without.slope:.2f}")
    ax.set_xlabel("weight (kg)")
    ax.set_ylabel("height (cm)")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig
