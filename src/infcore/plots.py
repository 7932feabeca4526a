"""The book's figures, drawn with seaborn and matplotlib. Each function returns a new Figure; the caller glues and closes it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from infcore.toys import ChairInfluence, LinearBoundary, Toy2D


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


# ---------------------------------------------------------------------------------------------------
# The 2-D toys of the "Rethinking influence" page

#: Colours of the toys' classes (class 0, class 1), as in the paper's figures.
TOY_CLASS_COLOURS = ("tab:red", "tab:green")
#: Markers of a toy's named groups of training points, in the order of ``toy.groups``.
TOY_GROUP_MARKERS = ("^", "P", "s", "D")


def toy_boundaries(
    toy: Toy2D,
    panels: Sequence[tuple[str, Mapping[str, LinearBoundary], Sequence[int]]],
) -> plt.Figure:
    """Side-by-side panels of a 2-D toy, each with some decision boundaries.

    Training points are coloured by class; the toy's named groups get their own markers; test points
    are hollow stars. Points removed in a panel are drawn hollow.

    Parameters
    ----------
    toy : Toy2D
    panels : sequence of (title, boundaries, removed)
        ``boundaries`` maps a legend label to a fitted boundary (drawn in order: solid, dashed,
        dotted); ``removed`` lists the training indices left out in that panel.
    """
    if len(panels) == 0:
        raise ValueError("panels must hold at least one (title, boundaries, removed) triple")
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 5.0), squeeze=False)
    everything = np.vstack([toy.x_train, toy.x_test])
    low, high = everything.min(axis=0) - 0.8, everything.max(axis=0) + 0.8
    marker = np.full(len(toy.y_train), "o", dtype=object)
    for index, symbol in zip(toy.groups.values(), TOY_GROUP_MARKERS):
        marker[index] = symbol
    for ax, (title, boundaries, removed) in zip(axes[0], panels):
        gone = np.isin(np.arange(len(toy.y_train)), removed)
        for i, (point, label) in enumerate(zip(toy.x_train, toy.y_train)):
            colour = TOY_CLASS_COLOURS[label]
            ax.scatter(*point, marker=marker[i], s=90 if marker[i] != "o" else 40, zorder=3,
                       facecolors="none" if gone[i] else colour, edgecolors=colour, linewidths=1.5)
        for point, label in zip(toy.x_test, toy.y_test):
            # Hollow, so that a training point that the test point copies stays visible.
            ax.scatter(*point, marker="*", s=380, facecolors="none",
                       edgecolors=TOY_CLASS_COLOURS[label], linewidths=1.5, zorder=4)
        x1 = np.linspace(low[0], high[0], 200)
        for (label, boundary), style in zip(boundaries.items(), ("-", "--", ":", "-.")):
            ax.plot(x1, boundary.line(x1), color="k", linestyle=style, label=label)
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(low[1], high[1])
        ax.set_aspect("equal")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_title(title, fontsize="medium")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize="small",
                  frameon=False)
    fig.tight_layout()
    return fig


def heuristic_pass_rates(table: pd.DataFrame, k: int) -> plt.Figure:
    """Heat map of the pass rates of the heuristic tests, one row per method.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`infcore.heuristics.heuristic_table`: methods as rows, tests as columns,
        pass rates in [0, 1].
    k : int
        The ``k`` of the top-k columns, written into their labels.
    """
    sns.set_theme(style="white")
    fig, ax = plt.subplots(figsize=(7.0, 0.6 * len(table) + 1.6))
    labels = [column.replace("top-k", f"top-{k}") for column in table.columns]
    sns.heatmap(table.astype(float), annot=True, fmt=".2f", vmin=0.0, vmax=1.0, cmap="viridis",
                cbar_kws={"label": "pass rate"}, xticklabels=labels, ax=ax)
    ax.set_xticklabels(ax.get_xticklabels(), rotation=20, ha="right")
    ax.set_ylabel("method")
    fig.tight_layout()
    return fig
