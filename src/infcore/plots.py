"""The book's figures, drawn with seaborn and matplotlib. Each function returns a new Figure; the caller glues and closes it."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from infcore.data import Split, add_trigger
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


# --------------------------------------------------------------------------------------------------
# The 2-D toys of the "Rethinking influence" page

#: Colours of the toys' classes (class 0, class 1), as in the paper's figures.
TOY_CLASS_COLOURS = ("tab:red", "tab:green")


def toy_boundaries(
    toy: Toy2D,
    panels: Sequence[tuple[str, Mapping[str, LinearBoundary], Sequence[int]]],
    markers: Mapping[str, str],
) -> plt.Figure:
    """Side-by-side panels of a 2-D toy, each with some decision boundaries.

    Training points are coloured by class; test points are hollow stars. Points removed in a panel
    are drawn hollow.

    Parameters
    ----------
    toy : Toy2D
    panels : sequence of (title, boundaries, removed)
        ``boundaries`` maps a legend label to a fitted boundary (drawn in order: solid, dashed,
        dotted, dash-dotted); ``removed`` lists the training indices left out in that panel.
    markers : mapping of str to str
        Matplotlib marker of each named group of ``toy.groups`` to single out; other points are
        circles.
    """
    if len(panels) == 0:
        raise ValueError("panels must hold at least one (title, boundaries, removed) triple")
    unknown = set(markers) - set(toy.groups)
    if unknown:
        raise ValueError(f"markers names groups the toy lacks: {sorted(unknown)}; "
                         f"allowed: {sorted(toy.groups)}")
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 5.2), squeeze=False)
    everything = np.vstack([toy.x_train, toy.x_test])
    low, high = everything.min(axis=0) - 0.8, everything.max(axis=0) + 0.8
    marker = np.full(len(toy.y_train), "o", dtype=object)
    for name, symbol in markers.items():
        marker[toy.groups[name]] = symbol
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
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize="small", frameon=False)
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


METRIC_LABELS = {"pearson": "Pearson", "spearman": "Spearman", "top_overlap": "top-10% overlap (%)"}


#: seaborn's font scale for the book's multi-panel figures: a 10-inch figure is shown about 7
#: inches wide in the text column, and its labels must stay as large as the body's small print
BOOK_FONT_SCALE = 1.6
#: the top-10% overlap of two unrelated rankings, in percent
CHANCE_OVERLAP = 10.0


def stability_points(pairs: pd.DataFrame, hue: str, hue_order: list | None = None,
                     paper: pd.DataFrame | None = None, title: str | None = None) -> plt.Figure:
    """Agreement of each method's scores between runs: one panel per metric, dots are means over
    pairs of runs, bars span the lowest and highest pair; a dotted line marks the chance level of
    the top-10% overlap.

    Parameters
    ----------
    pairs : DataFrame
        One row per compared pair, with columns method, ``hue`` and the metrics of
        :data:`infcore.stability.METRICS`.
    hue : str
        Column that colours the points (e.g. ``"perturbation"`` or ``"n_models"``).
    hue_order : list, optional
        Order of the ``hue`` levels.
    paper : DataFrame, optional
        The paper's values, long form with columns method, metric, value (e.g. one dataset of
        :func:`infcore.paper.table1`), drawn as black crosses on each method's row.
    title : str, optional
        Title over the panels (e.g. the run's scale).
    """
    sns.set_theme(style="whitegrid", font_scale=BOOK_FONT_SCALE)
    long = pairs.melt(id_vars=["method", hue], value_vars=list(METRIC_LABELS),
                      var_name="metric", value_name="value")
    long["metric"] = long["metric"].map(METRIC_LABELS)
    # a categorical hue (e.g. numbers of models as labels) gets distinct colours and legend markers
    long[hue] = long[hue].astype(str)
    hue_order = None if hue_order is None else [str(level) for level in hue_order]
    # seaborn divides the dodge among the levels minus one: a single level cannot be dodged
    dodge = 0.4 if long[hue].nunique() > 1 else False
    grid = sns.catplot(data=long, x="value", y="method", hue=hue, hue_order=hue_order, col="metric",
                       kind="point", errorbar=("pi", 100), dodge=dodge, linestyle="none",
                       sharex=False, height=4.6, aspect=0.75, markers="o")
    grid.set_titles("{col_name}")
    grid.set_axis_labels("", "")
    methods = list(dict.fromkeys(long["method"]))
    for metric, ax in zip(METRIC_LABELS, grid.axes.flat):
        if metric == "top_overlap":
            ax.axvline(CHANCE_OVERLAP, color="grey", linestyle=":", linewidth=1.5)
            ax.annotate("chance", (CHANCE_OVERLAP, 0.01), xycoords=("data", "axes fraction"),
                        ha="right", va="bottom", rotation=90, fontsize="small", color="grey")
        if paper is not None:
            values = paper[(paper.metric == metric) & paper.method.isin(methods)]
            crosses = ax.scatter(values["value"], values["method"].map(methods.index), marker="x",
                                 color="black", s=45, zorder=5)
    if paper is not None:
        handles = {**grid._legend_data, "the paper": crosses}
        grid._legend.remove()
        grid.add_legend(legend_data=handles, title=hue)
    # below the panels, so that the panels keep the figure's width
    sns.move_legend(grid, "upper center", bbox_to_anchor=(0.5, 0.07), ncol=5, frameon=False)
    if title:
        grid.figure.suptitle(title, y=1.02)
    return grid.figure


def trigger_examples(split: Split, source: int = 0, n: int = 6) -> plt.Figure:
    """The first ``n`` images of class ``source`` without and with the backdoor trigger.

    Parameters
    ----------
    split : Split
        Clean images.
    source : int
        Class to show.
    n : int
        Images per row.
    """
    images = split.x[split.y == source][:n]
    fig, axes = plt.subplots(2, len(images), figsize=(1.3 * len(images), 2.8))
    for row, batch in enumerate([images, add_trigger(images)]):
        for ax, image in zip(axes[row], batch):
            ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("clean")
    axes[1, 0].set_ylabel("trigger")
    fig.tight_layout()
    return fig


def poisoning_bars(bars: pd.DataFrame, title: str | None = None) -> plt.Figure:
    """Figure 3: L1-normalised mean influence of each training group, per method.

    Parameters
    ----------
    bars : DataFrame
        Columns method, group, share, low, high (:func:`infcore.poisoning.figure3` per method).
    title : str, optional
        Title over the bars (e.g. the run's scale).
    """
    sns.set_theme(style="whitegrid", font_scale=BOOK_FONT_SCALE)
    fig, ax = plt.subplots(figsize=(10, 5.5), layout="constrained")
    sns.barplot(data=bars, x="method", y="share", hue="group", ax=ax, errorbar=None)
    groups = list(dict.fromkeys(bars["group"]))
    for container, group in zip(ax.containers, groups):
        rows = bars[bars.group == group]
        xs = [patch.get_x() + patch.get_width() / 2 for patch in container.patches]
        ax.errorbar(xs, rows["share"], yerr=[rows["share"] - rows["low"], rows["high"] - rows["share"]],
                    fmt="none", ecolor="black", capsize=3, linewidth=1)
    ax.axhline(0, color="black", linewidth=0.8)
    handles, labels = ax.get_legend_handles_labels()
    ax.get_legend().remove()
    fig.legend(handles, labels, title="training examples", loc="outside lower center", ncol=3,
               frameon=False)
    ax.set_xlabel("")
    ax.set_ylabel("share of mean influence")
    plt.setp(ax.get_xticklabels(), rotation=25, ha="right", rotation_mode="anchor")
    if title:
        ax.set_title(title)
    return fig


def proponents_opponents(
    scores: np.ndarray,
    train: Split,
    test: Split,
    test_indices: Sequence[int],
    *,
    k: int = 3,
    image_shape: tuple[int, int] | None = None,
) -> plt.Figure:
    """Each chosen test image beside its ``k`` top proponents and ``k`` top opponents.

    Parameters
    ----------
    scores : ndarray of shape (n_test, n_train)
        One method's scores (positive = helpful).
    train, test : Split
        Their inputs are images, or flat vectors that ``image_shape`` reshapes.
    test_indices : sequence of int
        The test examples to show, one row each.
    k : int
        Proponents and opponents per row.
    image_shape : (int, int), optional
        Height and width of an image; by default the last two dimensions of the inputs.
    """
    shape = tuple(train.x.shape[-2:]) if image_shape is None else tuple(image_shape)
    fig, axes = plt.subplots(len(test_indices), 2 * k + 1, squeeze=False,
                             figsize=(1.1 * (2 * k + 1), 1.3 * len(test_indices)))
    for row, t in zip(axes, test_indices):
        order = np.argsort(-scores[t], kind="stable")
        shown = [("test", test, t)]
        shown += [("+", train, i) for i in order[:k]] + [("-", train, i) for i in order[::-1][:k]]
        for ax, (role, split, i) in zip(row, shown):
            ax.imshow(split.x[i].reshape(shape).numpy(), cmap="gray_r")
            label = int(split.y[i])
            title = f"test {label}" if role == "test" else f"{role} {label} ({scores[t, i]:+.2g})"
            ax.set_title(title, fontsize=7, color={"test": "black", "+": "tab:green",
                                                  "-": "tab:red"}[role])
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig


def yardsticks_by_models(table: pd.DataFrame, title: str | None = None,
                         chance_auprc: float | None = None) -> plt.Figure:
    """The three yardsticks against the number of models averaged: one panel each, a line per
    method (the LDS with its bootstrap interval as a band).

    Parameters
    ----------
    table : DataFrame
        Rows of :func:`infcore.yardsticks.side_by_side`.
    title : str, optional
    chance_auprc : float, optional
        The AUPRC of a random ranking (the flipped share), drawn as a dotted line.
    """
    sns.set_theme(style="whitegrid", font_scale=BOOK_FONT_SCALE)
    panels = [("loo_pearson", "agreement with LOO (Pearson)"),
              ("lds", "linear datamodeling score"), ("auprc", "mislabel detection (AUPRC)")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    palette = dict(zip(dict.fromkeys(table.method), sns.color_palette("tab10")))
    for ax, (column, label) in zip(axes, panels):
        for method, rows in table.groupby("method", sort=False):
            rows = rows.dropna(subset=[column]).sort_values("n_models")
            if rows.empty:
                continue
            ax.plot(rows.n_models, rows[column], marker="o", color=palette[method], label=method)
            if column == "lds":
                ax.fill_between(rows.n_models, rows.lds_low, rows.lds_high, color=palette[method],
                                alpha=0.12, linewidth=0)
        if column == "auprc" and chance_auprc is not None:
            ax.axhline(chance_auprc, color="grey", linestyle=":", linewidth=1.5)
        ax.set_xscale("log")
        sizes = sorted(table.n_models.unique())
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.set_xlabel("models averaged")
        ax.set_title(label)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=4,
               frameon=False)
    if title:
        fig.suptitle(title, y=1.02)
    fig.tight_layout()
    return fig


def damping_curve(curve: pd.DataFrame, paper_pearson: float, ours_pearson: float,
                  title: str | None = None) -> plt.Figure:
    """Influence functions along a sweep of dampings (:func:`infcore.causes.damping_curve`).

    Pearson correlations against the damping (the mean over models of the value each point
    took): between initialisations, with leave-one-out of the same model, and with the scores at
    a 10% larger damping. The paper's value between initialisations is a dashed line, and the
    halfway line from ours to it is the threshold of the page's verdicts.
    """
    sns.set_theme(style="whitegrid", font_scale=1.2)
    fig, ax = plt.subplots(figsize=(9, 5.5))
    shown = curve[curve.allowed > 0].assign(x=lambda d: (d.damping_low + d.damping_high) / 2)
    shown = shown.sort_values("x")
    for column, label, marker in (("stability_pearson", "between initialisations", "o"),
                                  ("with_loo_pearson", "with leave-one-out", "s"),
                                  ("sensitivity_pearson", "with damping x 1.1", "^")):
        ax.plot(shown.x, shown[column], marker=marker, label=label)
    ax.axhline(paper_pearson, color="black", linestyle="--", linewidth=1,
               label="the paper, between initialisations")
    ax.axhline((paper_pearson + ours_pearson) / 2, color="grey", linestyle=":", linewidth=1,
               label="halfway from ours to the paper (verdict threshold)")
    ax.set_xscale("log")
    if shown.x.max() < 10 * shown.x.min():  # within a decade: label the minor ticks
        ax.xaxis.set_minor_formatter(plt.FormatStrFormatter("%.2g"))
    else:
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel("damping (mean over models)")
    ax.set_ylabel("Pearson correlation")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def epochs_curve(curve: pd.DataFrame, paper: Mapping[str, float], title: str | None = None) -> plt.Figure:
    """Stability between initialisations against the epochs of training
    (:func:`infcore.causes.convergence`), one line per method, the paper's values as crosses; the
    training objective on a second axis."""
    sns.set_theme(style="whitegrid", font_scale=1.2)
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for k, (method, group) in enumerate(curve.groupby("method", sort=False)):
        ax.plot(group.epochs, group.pearson, marker="o", color=f"C{k}", label=method)
        ax.scatter([group.epochs.max()], [paper[method]], marker="x", color=f"C{k}", s=60,
                   zorder=5, label=f"{method}, the paper")
    ax.set_xlabel("epochs of training")
    ax.set_ylabel("Pearson between initialisations")
    ax.set_ylim(-0.05, 1.05)
    other = ax.twinx()
    objective = curve.drop_duplicates("epochs")
    other.plot(objective.epochs, objective.train_objective, color="grey", linestyle=":",
               marker=".", label="training objective (right)")
    other.set_ylabel("mean loss + decay term")
    other.grid(False)
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = other.get_legend_handles_labels()
    ax.legend(lines + more, labels + more_labels, loc="upper center", bbox_to_anchor=(0.5, -0.15),
              ncol=2, frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def noise_floor(rows: pd.DataFrame, paper_pearson: float, title: str | None = None) -> plt.Figure:
    """Leave-one-out's agreement with itself (identical seeds, other float32 rounding) beside its
    agreement between initialisations, as horizontal bars; the paper's value as a line."""
    sns.set_theme(style="whitegrid", font_scale=1.2)
    fig, ax = plt.subplots(figsize=(9, 0.8 * len(rows) + 2))
    itself = rows.measured.str.contains("itself")
    labels = [textwrap.fill(change, 30) for change in rows.change]
    ax.barh(labels, rows.pearson, color=np.where(itself, "C2", "C0"))
    ax.axvline(paper_pearson, color="black", linestyle="--", linewidth=1)
    ax.set_xlim(min(-0.1, float(rows.pearson.min()) - 0.05), 1.02)
    ax.set_xlabel("Pearson correlation of leave-one-out")
    ax.invert_yaxis()
    handles = [plt.Rectangle((0, 0), 1, 1, color="C2"), plt.Rectangle((0, 0), 1, 1, color="C0"),
               plt.Line2D([], [], color="black", linestyle="--")]
    ax.legend(handles, ["with itself, other float32 rounding", "between initialisations",
                        "the paper, between initialisations"], loc="upper center",
              bbox_to_anchor=(0.4, -0.12), ncol=2, frameon=False, fontsize="small")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
