"""Candidate causes of the gap between our Table 1 and the paper's, each as one controlled change.

The paper finds leave-one-out and influence functions the least stable methods under a change of
initialisation (Pearson 0.043 and 0.023 on MNIST); our runs find them far more stable. This module
holds the variants of the two methods that a protocol the paper did not state could have used,
and the cached sweeps that measure each one with the Table 1 metrics.

What it holds:

Variants of leave-one-out
    :func:`loo_variants` (the order of the remaining examples, the batching of the retrainings,
    float32 or float64 loss differences from the same retrainings) and :func:`response_scores`
    (warm-start leave-one-out and the proximal Bregman response function of Bae et al. 2022).
Variants of influence functions
    :func:`curvature` (Hessian or Gauss-Newton, with or without the weight-decay term),
    :func:`parse_damping` / :func:`resolve_damping` (dampings relative to the smallest that
    works), :func:`damped_influence` (scores at several dampings from one eigendecomposition).
Cached sweeps on an :class:`~infcore.experiments.Experiment`
    :func:`loo_scores`, :func:`influence_scores`, :func:`response_target_scores`; the baseline of
    each comes from the same cache entries as page 2 (``Experiment.scores``).
Metrics and verdicts
    :func:`between_runs`, :func:`agreement`, :func:`verdict` and :data:`PAPER`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from infcore import paper, stability
from infcore.data import Split
from infcore.experiments import Experiment
from infcore.methods import REVISIONS
from infcore.methods.gradients import per_example_grads
from infcore.methods.influence import AUTO_DAMPING_MARGIN, gauss_newton, hessian, influence_function
from infcore.methods.loo import check_columns, retrain_without_each
from infcore.training import (
    TrainConfig,
    TrainedModel,
    stacked_logits,
    accuracy,
    check_order_variant,
    float64_losses,
    per_example_loss,
    test_loss,
)

#: curvature matrices of :func:`curvature`
CURVATURES = ("hessian", "gauss_newton")
#: targets of :func:`response_scores`
RESPONSE_TARGETS = ("warm_start", "pbrf")
#: loss precisions of :func:`loo_variants`
PRECISIONS = ("float64", "float32")
#: the book's leave-one-out: retrainings batched as :class:`~infcore.experiments.Experiment` does
BASELINE_CHUNK = 64
MOVES, DOES_NOT = "moves the number to the paper's", "does not"
LOO, IF = "leave_one_out", "influence_function"
#: the book's influence functions: exact Hessian with its weight-decay term, damping "auto"
BOOK_INFLUENCE = ("hessian", True, "auto")


def _paper_values() -> dict[str, dict[str, float]]:
    table = paper.table1()
    rows = table[(table.dataset == "mnist") & (table.perturbation == "initialization")]
    return {method: {m: float(rows[(rows.method == method) & (rows.metric == m)].value.iloc[0])
                     for m in stability.METRICS}
            for method in ("leave_one_out", "influence_function")}


#: the paper's Table 1 (MNIST, initialisation) for the two methods, metric -> value
PAPER: dict[str, dict[str, float]] = _paper_values()


# --------------------------------------------------------------------------- leave-one-out


def loo_variants(
    trained: TrainedModel,
    train: Split,
    test: Split,
    *,
    order_variant: str = "kept",
    chunk_size: int = BASELINE_CHUNK,
    device: str | torch.device = "cpu",
    progress: bool = False,
    columns: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Leave-one-out from one set of retrainings, with its losses in float64 and in float32.

    Like :func:`infcore.methods.loo.leave_one_out` (``order_variant="kept"`` and the same
    ``chunk_size`` give its scores: the same retrainings, :func:`~infcore.methods.loo.retrain_without_each`), but the remaining examples may be ordered otherwise
    (:func:`infcore.training.retraining_order`), and the test losses of the same retrained
    weights are also evaluated in float32, as a plain implementation would. ``chunk_size`` sets
    how many retrainings share one batched computation: another value sums in another order, so
    it changes the weights by float32 rounding only. ``progress`` shows a bar of the retrainings.
    ``columns`` (distinct training indices) leaves out only those examples, one retraining each.

    Returns
    -------
    dict with ``float64`` and ``float32``: ndarray of shape (n_test, n_train), or
    (n_test, len(columns)); float64
    """
    check_order_variant(order_variant)
    if trained.config is None or trained.excluded is not None:
        raise ValueError("loo_variants needs a model trained by infcore on all of `train`")
    retrained = retrain_without_each(trained, train, chunk_size=chunk_size, device=device,
                                     order_variant=order_variant, progress=progress,
                                     columns=columns)

    def float32_losses(model: TrainedModel) -> torch.Tensor:
        with torch.no_grad():
            return per_example_loss(model.model, model.params, test.x, test.y).double()

    result = {}
    in_float64 = float64_losses(trained.model, test, loss=trained.loss)  # as leave_one_out's
    for precision, losses in (("float64", lambda m: in_float64(m.params)),
                              ("float32", float32_losses)):
        without = torch.stack([losses(m) for m in retrained], dim=1)
        result[precision] = (without - losses(trained)[:, None]).numpy()
    return result


def response_scores(
    trained: TrainedModel,
    train: Split,
    test: Split,
    *,
    target: str,
    columns: Sequence[int],
    steps: int,
    lr: float,
    damping: float = AUTO_DAMPING_MARGIN,
    chunk_size: int = 64,
    example_chunk: int = 200,
) -> np.ndarray:
    """Leave-one-out targets reached from the trained weights by ``steps`` of gradient descent.

    ``"warm_start"``: starting from the trained weights, ``steps`` full-batch gradient-descent
    steps on the training objective without example ``i`` (mean loss of the others plus the
    weight decay), against the same steps with every example; the score is the difference of the
    test losses of the two ends (Koh and Liang's retraining from the optimum). ``"pbrf"``: the
    proximal Bregman response function of Bae et al. (2022) for removing ``i``, minimised by the
    same steps from the trained weights ``theta_s``: the mean Bregman divergence of the
    cross-entropy between the logits and those of ``theta_s``, minus ``loss_i / n``, plus
    ``(weight_decay + damping) / 2 * ||theta - theta_s||^2`` (the Bregman divergence of the
    weight-decay term and the proximity term); the score is the test loss there minus at
    ``theta_s``. Influence functions with the Gauss-Newton matrix and that damping are its
    first-order approximation, times n. Both are batched over up to ``chunk_size`` left-out
    examples; losses are evaluated in float64.

    Parameters
    ----------
    trained : TrainedModel
    train : Split of n examples
    test : Split of n_test examples
    target : {"warm_start", "pbrf"}
    columns : sequence of int
        Training examples to leave out (the columns of the result).
    steps : int
        Gradient-descent steps, >= 1.
    lr : float
        Step size, > 0.
    damping : float
        Proximity coefficient of the PBRF, >= 0 (unused by ``warm_start``).
    chunk_size : int
        Left-out examples descended together.
    example_chunk : int
        Training examples per forward pass (bounds the memory).

    Returns
    -------
    ndarray of shape (n_test, len(columns)), float64
    """
    if target not in RESPONSE_TARGETS:
        raise ValueError(f"target must be one of {list(RESPONSE_TARGETS)}; got {target!r}")
    n = len(train)
    columns = check_columns(columns, n)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
    for name, value in (("lr", lr), ("damping", damping)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value) or value < 0 or (name == "lr" and value == 0):
            raise ValueError(f"{name} must be a finite number {'> 0' if name == 'lr' else '>= 0'};"
                             f" got {value!r}")
    model, start, decay = trained.model, trained.params, float(trained.weight_decay)
    x, y = train.x, train.y
    with torch.no_grad():
        ref_logits = torch.func.functional_call(model, start, (x,))
    ref_lse, ref_p = ref_logits.logsumexp(dim=1), ref_logits.softmax(dim=1)

    def descend(excluded: list[int | None]) -> list[dict[str, torch.Tensor]]:
        k = len(excluded)
        params = {name: p.unsqueeze(0).repeat(k, *([1] * p.dim())) for name, p in start.items()}
        weight = torch.full((k, n), 1.0 / n)
        for row, i in enumerate(excluded):
            if i is not None and target == "warm_start":
                weight[row] = 1.0 / (n - 1)
                weight[row, i] = 0.0
        own = torch.tensor([i for i in excluded if i is not None], dtype=torch.long)
        own_rows = [row for row, i in enumerate(excluded) if i is not None]
        for _ in range(steps):
            leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
            grads = [torch.zeros_like(p) for p in leaves.values()]
            for s in range(0, n, example_chunk):
                xb = x[s : s + example_chunk]
                logits = stacked_logits(model, leaves, xb.unsqueeze(1).expand(-1, k, *xb.shape[1:]))
                if target == "warm_start":
                    losses = F.cross_entropy(logits.flatten(0, 1), y[s : s + example_chunk].repeat(k),
                                             reduction="none").view(k, -1)
                    total = (losses * weight[:, s : s + example_chunk]).sum()
                else:
                    bregman = (logits.logsumexp(dim=2) - ref_lse[s : s + example_chunk]
                               - (ref_p[s : s + example_chunk] * (logits - ref_logits[s : s + example_chunk])).sum(dim=2))
                    total = bregman.sum() / n
                for g, d in zip(grads, torch.autograd.grad(total, list(leaves.values()))):
                    g += d
            if target == "pbrf" and len(own):
                # the removed example's own loss, each model on its own example
                mine = {name: p[own_rows] for name, p in leaves.items()}
                logits = stacked_logits(model, mine, x[own].unsqueeze(0))
                removed = F.cross_entropy(logits.flatten(0, 1), y[own], reduction="sum") / n
                for g, d in zip(grads, torch.autograd.grad(-removed, list(leaves.values()))):
                    g += d
            with torch.no_grad():
                if target == "warm_start":
                    params = {name: p - lr * (g + decay * p)
                              for (name, p), g in zip(params.items(), grads)}
                else:
                    params = {name: p - lr * (g + (decay + damping) * (p - start[name]))
                              for (name, p), g in zip(params.items(), grads)}
        return [{name: p[row].detach() for name, p in params.items()} for row in range(k)]

    def losses_at(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return test_loss(replace(trained, params=params), test)

    entries: list[int | None] = ([None] if target == "warm_start" else []) + columns
    ends = []
    for s in range(0, len(entries), chunk_size):
        ends += descend(entries[s : s + chunk_size])
    reference = losses_at(ends.pop(0)) if target == "warm_start" else test_loss(trained, test)
    return torch.stack([losses_at(p) - reference for p in ends], dim=1).numpy()


# --------------------------------------------------------------------------- influence functions


def curvature(
    trained: TrainedModel, train: Split, kind: str = "hessian", weight_decay_term: bool = True
) -> torch.Tensor:
    """The curvature matrix of an influence function, float64.

    Parameters
    ----------
    kind : {"hessian", "gauss_newton"}
        The exact Hessian of the training objective, or the Gauss-Newton matrix
        (:func:`~infcore.methods.influence.gauss_newton`).
    weight_decay_term : bool
        Whether the ``weight_decay * I`` of the L2 term is included.

    Returns
    -------
    Tensor of shape (P, P)
    """
    if kind not in CURVATURES:
        raise ValueError(f"curvature must be one of {list(CURVATURES)}; got {kind!r}")
    decay = float(trained.weight_decay) if weight_decay_term else 0.0
    if kind == "hessian":
        matrix = hessian(trained.model, trained.params, train, decay, loss=trained.loss)
    else:
        matrix = gauss_newton(trained.model, {k: v.double() for k, v in trained.params.items()},
                              train, decay)
    return matrix.detach().to("cpu", torch.float64)


def parse_damping(spec: object) -> tuple[str, float]:
    """A damping as ``(base, factor)``: ``base`` is ``"absolute"``, ``"critical"`` or ``"auto"``.

    ``0.01`` (a number > 0) is that damping; ``"critical*1.01"`` is 1.01 times the smallest damping
    that makes ``H + damping I`` positive definite, ``max(0, -lambda_min(H))`` (the factor must
    exceed 1); ``"auto"`` is that plus :data:`~infcore.methods.influence.AUTO_DAMPING_MARGIN`
    (the book's default) and ``"auto*1.1"`` 1.1 times it. Refused before any work when it is none
    of these.
    """
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if not (math.isfinite(spec) and spec > 0):
            raise ValueError(f"a numeric damping must be a finite number > 0; got {spec!r}")
        return "absolute", float(spec)
    if isinstance(spec, str):
        base, _, factor_text = spec.partition("*")
        try:
            factor = float(factor_text) if factor_text else 1.0
        except ValueError:
            factor = float("nan")
        if base in ("critical", "auto") and math.isfinite(factor) and factor > 0 and (
                base == "auto" or factor > 1):
            return base, factor
    raise ValueError(f"damping must be a number > 0, 'auto', 'auto*F' (F > 0) or 'critical*F' "
                     f"(F > 1: above the smallest damping that works); got {spec!r}")


def resolve_damping(spec: object, smallest_eigenvalue: float) -> float:
    """The damping that ``spec`` (see :func:`parse_damping`) means for a matrix with that
    smallest eigenvalue."""
    base, factor = parse_damping(spec)
    critical = max(0.0, -smallest_eigenvalue)
    if base == "absolute":
        return factor
    return factor * (critical + (AUTO_DAMPING_MARGIN if base == "auto" else 0.0))


def damped_influence(
    trained: TrainedModel,
    train: Split,
    test: Split,
    matrix: torch.Tensor,
    dampings: Sequence[object],
    *,
    allow_indefinite: bool = False,
) -> list[np.ndarray | None]:
    """Influence-function scores ``g_test^T (M + d I)^-1 g_train`` for several dampings ``d``.

    One eigendecomposition of ``matrix`` serves every damping. Every damping is resolved and
    checked before any gradient is taken: one that leaves ``M + d I`` with an eigenvalue <= 0 is
    refused (or, with ``allow_indefinite``, gives None).

    Parameters
    ----------
    matrix : Tensor of shape (P, P)
        Symmetric curvature (:func:`curvature`).
    dampings : sequence of damping specs (:func:`parse_damping`)

    Returns
    -------
    list of ndarray of shape (n_test, n_train) or None, one per damping

    Raises
    ------
    ValueError
        For a damping spec that means nothing, or one that leaves ``M + d I`` indefinite (unless
        ``allow_indefinite``), naming the smallest damping that works.
    """
    for spec in dampings:
        parse_damping(spec)
    values, vectors = torch.linalg.eigh(matrix.detach().to("cpu", torch.float64))
    return _damped_from_eigh(trained, train, test, values, vectors, dampings, allow_indefinite)


def _damped_from_eigh(
    trained: TrainedModel, train: Split, test: Split, values: torch.Tensor, vectors: torch.Tensor,
    dampings: Sequence[object], allow_indefinite: bool,
) -> list[np.ndarray | None]:
    """:func:`damped_influence` from the eigendecomposition ``(values, vectors)`` of the matrix."""
    smallest = float(values[0])
    resolved = [resolve_damping(spec, smallest) for spec in dampings]
    bad = [(spec, d) for spec, d in zip(dampings, resolved) if smallest + d <= 0]
    if bad and not allow_indefinite:
        spec, d = bad[0]
        raise ValueError(f"damping {spec!r} = {d:g} leaves M + damping*I indefinite: the smallest "
                         f"eigenvalue of M is {smallest:.6g}, so the damping must be > "
                         f"{max(0.0, -smallest):.6g}")
    g_train = per_example_grads(trained.model, trained.params, train.x, train.y,
                                loss=trained.loss).double() @ vectors
    g_test = per_example_grads(trained.model, trained.params, test.x, test.y,
                               loss=trained.loss).double() @ vectors
    return [None if smallest + d <= 0 else ((g_test / (values + d)) @ g_train.T).numpy()
            for d in resolved]


# --------------------------------------------------------------------------- cached sweeps


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def loo_scores(
    experiment: Experiment,
    configs: Sequence[TrainConfig],
    *,
    order_variant: str = "kept",
    chunk_size: int | None = None,
    precision: str = "float64",
    columns: Sequence[int] | None = None,
) -> tuple[list[np.ndarray], float]:
    """Leave-one-out under one variant for each config, cached; and the seconds it cost.

    The book's own variant (kept order, retrainings in chunks of ``experiment.chunk_size``, the
    default of ``chunk_size``, float64) is read from the cache entries of
    ``experiment.scores("leave_one_out", ...)``, page 2's. Every other one
    is computed with :func:`loo_variants` and cached with both precisions (and the seconds it
    took, so that a cached run still reports its cost). With ``columns`` (see
    :func:`draw_columns`) every variant retrains only for those examples, and the book's own is
    page 2's matrices restricted to them.

    Returns
    -------
    (list of ndarray of shape (n_test, n_train), or (n_test, len(columns)), seconds spent
    computing; 0 for the baseline, whose cost belongs to page 2)
    """
    check_order_variant(order_variant)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}; got {precision!r}")
    chunk_size = experiment.chunk_size if chunk_size is None else chunk_size
    if columns is not None:
        columns = check_columns(columns, len(experiment.train))
    if (order_variant, chunk_size, precision) == ("kept", experiment.chunk_size, "float64"):
        return restricted(experiment.scores("leave_one_out", configs), columns), 0.0
    scores, seconds = [], 0.0
    for config in configs:
        key = {**experiment._model_key(config), "method": "leave_one_out",
               "revision": REVISIONS["leave_one_out"], "order_variant": order_variant,
               "retraining_chunk": chunk_size}
        if columns is not None:
            key["columns"] = columns

        def compute(config: TrainConfig = config) -> dict[str, Any]:
            model = experiment.models([config])[0]
            value, spent = _timed(lambda: loo_variants(
                model, experiment.train, experiment.test, order_variant=order_variant,
                chunk_size=chunk_size, device=experiment.device, progress=experiment.progress,
                columns=columns))
            return {**{p: torch.from_numpy(v) for p, v in value.items()}, "seconds": spent}

        entry = experiment.cache.get_or_compute("loo_variant", key, compute)
        scores.append(entry[precision].numpy())
        seconds += float(entry["seconds"])
    return scores, seconds


def influence_scores(
    experiment: Experiment,
    configs: Sequence[TrainConfig],
    variants: Sequence[tuple[str, bool, object]],
) -> tuple[dict[tuple[str, bool, object], list[np.ndarray | None]], float]:
    """Influence functions under several (curvature, weight-decay term, damping) variants.

    ``("hessian", True, "auto")`` is the book's own and comes from page 2's cache entries
    (``experiment.scores("influence_function", ..., damping="auto")``); the others are computed
    per model from one curvature matrix each (:func:`damped_influence`) and cached one by one,
    with the damping they resolved to. A damping that leaves the matrix indefinite gives None.

    Returns
    -------
    (dict variant -> list over configs of ndarray or None, seconds spent computing)
    """
    variants = list(dict.fromkeys((c, bool(w), d) for c, w, d in variants))
    for kind, _, damping in variants:
        if kind not in CURVATURES:
            raise ValueError(f"curvature must be one of {list(CURVATURES)}; got {kind!r}")
        parse_damping(damping)
    result: dict[tuple[str, bool, object], list] = {v: [] for v in variants}
    seconds = 0.0
    for config in configs:
        def key(variant):
            kind, term, damping = variant
            return {**experiment._model_key(config), "method": "influence_function",
                    "curvature": kind, "weight_decay_term": term, "damping": damping}

        own = [v for v in variants if v != BOOK_INFLUENCE]
        missing = [v for v in own if not experiment.cache.has("influence_variant", key(v))]
        book_key = experiment._scores_key(config, IF, {"damping": "auto"})
        need_book = BOOK_INFLUENCE in variants and not experiment.cache.has("scores", book_key)
        kinds = {v[0] for v in missing} | ({"hessian"} if need_book else set())
        model = experiment.models([config])[0] if kinds else None
        for kind in sorted(kinds):
            start = time.perf_counter()
            # one matrix and one eigendecomposition per model: the weight-decay term is exactly
            # weight_decay * I, which shifts every eigenvalue and keeps the eigenvectors
            full = curvature(model, experiment.train, kind, True)
            if kind == "hessian" and need_book:
                # page 2's entry, computed as compute_scores would, from this same Hessian
                experiment.cache.save("scores", book_key, influence_function(
                    model, experiment.train, experiment.test, damping="auto", hess=full))
            members = [v for v in missing if v[0] == kind]
            if not members:
                continue
            eigenvalues, vectors = torch.linalg.eigh(full)
            for term in sorted({v[1] for v in members}):
                shifted = eigenvalues if term else eigenvalues - float(model.weight_decay)
                group = [v for v in members if v[1] == term]
                values = _damped_from_eigh(model, experiment.train, experiment.test, shifted,
                                           vectors, [v[2] for v in group], allow_indefinite=True)
                smallest = float(shifted[0])
                for v, value in zip(group, values):
                    experiment.cache.save("influence_variant", key(v), {
                        "scores": None if value is None else torch.from_numpy(value),
                        "damping": resolve_damping(v[2], smallest), "smallest": smallest,
                        "seconds": (time.perf_counter() - start) / len(members)})
        for v in own:
            entry = experiment.cache.load("influence_variant", key(v))
            result[v].append(None if entry["scores"] is None else entry["scores"].numpy())
            seconds += float(entry["seconds"])
    if BOOK_INFLUENCE in result:
        result[BOOK_INFLUENCE] = experiment.scores(IF, configs, damping="auto")
    return result, seconds


def resolved_dampings(
    experiment: Experiment, configs: Sequence[TrainConfig], variant: tuple[str, bool, object]
) -> list[float]:
    """The damping each config's model used under ``variant`` (after :func:`influence_scores`)."""
    kind, term, damping = variant
    return [float(experiment.cache.load("influence_variant", {
        **experiment._model_key(c), "method": "influence_function", "curvature": kind,
        "weight_decay_term": bool(term), "damping": damping})["damping"]) for c in configs]


def response_target_scores(
    experiment: Experiment,
    configs: Sequence[TrainConfig],
    *,
    target: str,
    columns: Sequence[int],
    steps: int,
    lr: float,
    damping: float = AUTO_DAMPING_MARGIN,
) -> tuple[list[np.ndarray], float]:
    """:func:`response_scores` for each config's model, cached; and the seconds it cost."""
    columns = check_columns(columns, len(experiment.train))
    scores, seconds = [], 0.0
    for config in configs:
        key = {**experiment._model_key(config), "target": target, "columns": columns,
               "steps": steps, "lr": lr, "damping": damping if target == "pbrf" else None}

        def compute(config: TrainConfig = config) -> dict[str, Any]:
            model = experiment.models([config])[0]
            value, spent = _timed(lambda: response_scores(
                model, experiment.train, experiment.test, target=target, columns=columns,
                steps=steps, lr=lr, damping=damping))
            return {"scores": torch.from_numpy(value), "seconds": spent}

        entry = experiment.cache.get_or_compute("response_target", key, compute)
        scores.append(entry["scores"].numpy())
        seconds += float(entry["seconds"])
    return scores, seconds


# --------------------------------------------------------------------------- metrics, verdicts


def draw_columns(n: int, count: int | None, seed: int = 0) -> list[int] | None:
    """``count`` distinct training indices in ``[0, n)``, drawn with ``seed`` and sorted; None
    (every example) when ``count`` is None.

    Page 7 scores its leave-one-out variants on such a subset at the paper's scale: each variant
    costs one retraining per column. Compare only numbers over the same columns: a Pearson
    correlation over a subset is not an estimate of the one over all columns (a few large scores
    carry much of a row's variance), and another draw gives another value (DESIGN.md measures
    both).

    Raises
    ------
    ValueError
        If ``count`` is not an integer in ``[2, n]`` (or None).
    """
    if count is None:
        return None
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 2 <= count <= n:
        raise ValueError(f"the number of columns must be None or an integer in [2, {n}]; got "
                         f"{count!r}")
    return sorted(np.random.default_rng(seed).choice(n, int(count), replace=False).tolist())


def restricted(scores: Sequence[np.ndarray], columns: Sequence[int] | None) -> list[np.ndarray]:
    """Each score matrix's ``columns`` (all of them when None)."""
    return [s if columns is None else s[:, list(columns)] for s in scores]


def between_runs(scores: Sequence[np.ndarray], q: float = 90.0) -> dict[str, float]:
    """Table 1's metrics between every pair of runs, averaged over test examples and pairs."""
    pairs = stability.pairwise_stability(list(scores), q=q)
    return {**{m: float(pairs[m].mean()) for m in stability.METRICS}, "n_pairs": len(pairs)}


def agreement(a: Sequence[np.ndarray], b: Sequence[np.ndarray], q: float = 90.0) -> dict[str, float]:
    """Table 1's metrics between ``a[k]`` and ``b[k]`` (the same run under two computations),
    averaged over test examples and over k."""
    if len(a) != len(b) or not a:
        raise ValueError(f"a and b must hold the same number (>= 1) of runs; got {len(a)}, {len(b)}")
    means = pd.DataFrame([stability.row_metrics(x, y, q=q).mean() for x, y in zip(a, b)])
    return {**{m: float(means[m].mean()) for m in stability.METRICS}, "n_pairs": len(a)}


def halfway(ours: float, theirs: float) -> float:
    """The threshold of :func:`verdict`: halfway from our baseline to the paper's value."""
    return (ours + theirs) / 2


def verdict(value: float, ours: float, theirs: float) -> str:
    """Whether a change moves a Pearson correlation to the paper's: past :func:`halfway`.

    ``value`` is the correlation with the change, ``ours`` without it, ``theirs`` the paper's.
    A nan (not measurable) does not move it.
    """
    if not (isinstance(value, float) or isinstance(value, (int, np.floating))) or math.isnan(value):
        return DOES_NOT
    threshold = halfway(ours, theirs)
    moved = value <= threshold if theirs <= ours else value >= threshold
    return MOVES if moved else DOES_NOT


# --------------------------------------------------------------------------- the study of page 7

BETWEEN = "between initialisations"


def page_variants(dampings: Sequence[object], step: float = 0.1) -> list[tuple[str, bool, object]]:
    """Every influence-function variant of page 7 (:func:`damping_curve`, :func:`curvature_rows`,
    :func:`target_rows`), so that one call of :func:`influence_scores` computes each model's
    Hessian and Gauss-Newton matrix once."""
    variants = [BOOK_INFLUENCE]
    variants += [("hessian", True, d) for d in dampings]
    variants += [("hessian", True, scaled_damping(d, 1 + step)) for d in dampings]
    variants += [(kind, term, "auto") for kind in CURVATURES for term in (True, False)]
    return list(dict.fromkeys(variants))


def scaled_damping(spec: object, factor: float) -> object:
    """The damping spec ``factor`` times ``spec`` (for the +10% sensitivity of a sweep point)."""
    base, value = parse_damping(spec)
    if base == "absolute":
        return value * factor
    return f"{base}*{value * factor:.6g}"


def _row(cause: str, change: str, method: str, measured: str, metrics: dict[str, float],
         seconds: float = 0.0) -> dict[str, Any]:
    return {"cause": cause, "change": change, "method": method, "measured": measured,
            **{m: metrics[m] for m in stability.METRICS}, "n_pairs": int(metrics["n_pairs"]),
            "seconds": float(seconds)}


def seed_configs(base: TrainConfig, seeds: Sequence[int]) -> list[TrainConfig]:
    """Page 2's initialisation runs: ``base`` with each init seed (the order seed stays)."""
    return [replace(base, init_seed=s) for s in seeds]


def baseline_rows(experiment: Experiment, configs: Sequence[TrainConfig],
                  columns: Sequence[int] | None = None) -> pd.DataFrame:
    """Our Table 1 cells for leave-one-out and influence functions (page 2's cache entries),
    leave-one-out's over ``columns`` only when given (see :func:`draw_columns`)."""
    loo = restricted(experiment.scores(LOO, configs), columns)
    rows = [_row("baseline", "ours", LOO, BETWEEN, between_runs(loo)),
            _row("baseline", "ours", IF, BETWEEN,
                 between_runs(experiment.scores(IF, configs, damping="auto")))]
    return pd.DataFrame(rows)


def precision_and_noise_rows(
    experiment: Experiment, configs: Sequence[TrainConfig], noise_chunk: int,
    columns: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Causes 1 and 3 from one set of retrainings batched in chunks of ``noise_chunk``.

    Loss precision: the stability of leave-one-out whose differences are taken in float32, and in
    float64 from the same retrainings. Noise floor: the agreement of our leave-one-out with the
    same retrainings batched otherwise (identical seeds, other float32 rounding), the most that
    two computations of leave-one-out can agree. ``columns``: over those training examples only.
    """
    if noise_chunk == experiment.chunk_size:
        raise ValueError(f"noise_chunk must differ from the experiment's chunk_size "
                         f"({experiment.chunk_size}), or the two computations are the same")
    f32, seconds = loo_scores(experiment, configs, chunk_size=noise_chunk, precision="float32",
                              columns=columns)
    f64, _ = loo_scores(experiment, configs, chunk_size=noise_chunk, precision="float64",
                        columns=columns)
    ours = restricted(experiment.scores(LOO, configs), columns)
    return pd.DataFrame([
        _row("1. loss precision", "float32 loss differences", LOO, BETWEEN, between_runs(f32),
             seconds),
        _row("1. loss precision", "float64, the same retrainings", LOO, BETWEEN, between_runs(f64)),
        _row("3. noise floor", "same seeds, other float32 rounding", LOO,
             "agreement with itself", agreement(ours, f64)),
        _row("3. noise floor", "float32 against float64 losses", LOO, "agreement with itself",
             agreement(f32, f64)),
    ])


def order_rows(
    experiment: Experiment,
    configs: Sequence[TrainConfig],
    joint: Sequence[str] = ("redrawn",),
    joint_configs: Sequence[TrainConfig] | None = None,
    columns: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Cause 2: the order of the remaining examples in each retraining.

    ``kept`` is ours; ``redrawn`` and ``fresh`` retrain each left-out model in another order
    (:func:`~infcore.training.retraining_order`), under the same order seed for every
    initialisation. Each variant in ``joint`` is also measured with one seed for everything
    (order seed = init seed), as ``torch.manual_seed(seed)`` before a shuffling DataLoader sets
    both: a change of initialisation then also changes every order. ``joint_configs`` (``configs``
    by default) are the runs of that protocol, before their order seeds are set. ``columns``:
    over those training examples only.
    """
    ours = restricted(experiment.scores(LOO, configs), columns)
    rows = []
    for variant, change in (("redrawn", "order re-drawn over n-1 (DataLoader)"),
                            ("fresh", "a fresh order per retraining")):
        scores, seconds = loo_scores(experiment, configs, order_variant=variant, columns=columns)
        rows += [_row("2. order of the rest", change, LOO, BETWEEN, between_runs(scores), seconds),
                 _row("2. order of the rest", change, LOO, "agreement with ours, same model",
                      agreement(scores, ours))]
    one_seed = [replace(c, order_seed=c.init_seed) for c in (joint_configs or configs)]
    for variant in joint:
        scores, seconds = loo_scores(experiment, one_seed, order_variant=variant, columns=columns)
        change = {"kept": "kept order", "redrawn": "order re-drawn over n-1 (DataLoader)",
                  "fresh": "a fresh order per retraining"}[variant]
        rows.append(_row("2. order of the rest", f"{change}, one seed for init and order", LOO,
                         BETWEEN, between_runs(scores), seconds))
    return pd.DataFrame(rows)


def convergence(
    experiment: Experiment,
    base: TrainConfig,
    seeds: Sequence[int],
    long_epochs: Sequence[int],
    long_loo_seeds: Sequence[int],
    columns: Sequence[int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cause 4: longer training, ``base.epochs`` (ours) against each of ``long_epochs``.

    Leave-one-out at ``long_epochs[k]`` uses the first ``long_loo_seeds[k]`` seeds (its cost grows
    with the epochs; 0 leaves it out at that length); influence functions use every seed. With
    ``columns``, leave-one-out at every length retrains only for those examples (at
    ``base.epochs``, page 2's matrices restricted to them).

    Returns
    -------
    (rows of the causes table, the curve: one row per epochs and method with the metrics, the
    number of pairs, the mean training objective and the test accuracy of the models)
    """
    if len(long_epochs) != len(long_loo_seeds):
        raise ValueError("long_epochs and long_loo_seeds must have the same length; got "
                         f"{list(long_epochs)} and {list(long_loo_seeds)}")
    curve, rows = [], []
    for epochs, n_loo in [(base.epochs, len(seeds)), *zip(long_epochs, long_loo_seeds)]:
        configs = seed_configs(replace(base, epochs=epochs), seeds)
        models = experiment.models(configs)
        objective = [float(test_loss(m, experiment.train).mean()
                           + m.weight_decay / 2 * sum((p.double() ** 2).sum() for p in m.params.values()))
                     for m in models]
        accuracies = [accuracy(m, experiment.test) for m in models]
        for method, n_runs in ((LOO, n_loo), (IF, len(configs))):
            if n_runs == 0:
                continue
            if method == IF:
                scores = experiment.scores(IF, configs, damping="auto")
            elif epochs == base.epochs or columns is None:  # page 2's, or every column
                scores = restricted(experiment.scores(LOO, configs[:n_runs]), columns)
            else:
                scores = experiment.scores(LOO, configs[:n_runs], columns=list(columns))
            metrics = between_runs(scores)
            curve.append({"epochs": epochs, "method": method, **metrics,
                          "train_objective": float(np.mean(objective)),
                          "test_accuracy": float(np.mean(accuracies))})
            if epochs != base.epochs:
                rows.append(_row("4. convergence", f"{epochs} epochs", method, BETWEEN, metrics))
    return pd.DataFrame(rows), pd.DataFrame(curve)


def damping_curve(
    experiment: Experiment, configs: Sequence[TrainConfig], dampings: Sequence[object],
    step: float = 0.1,
) -> tuple[pd.DataFrame, float]:
    """Cause 6: influence functions (exact Hessian) along a sweep of dampings.

    At each damping: the stability between initialisations, the agreement with leave-one-out of
    the same model, and the agreement with the scores at ``1 + step`` times that damping (the
    paper's "a small change of damping changes the scores a lot"). A damping that leaves some
    model's ``H + damping I`` indefinite is reported as not allowed (metrics nan).

    Returns
    -------
    (DataFrame with one row per damping: damping, damping_low and damping_high (the values it took
    over the models), allowed (models for which it is), the three metrics for each of stability,
    with_loo and sensitivity), seconds spent computing)
    """
    variants = [("hessian", True, d) for d in dampings]
    variants += [("hessian", True, scaled_damping(d, 1 + step)) for d in dampings]
    scores, seconds = influence_scores(experiment, configs, variants)
    loo = experiment.scores(LOO, configs)
    rows = []
    for spec in dampings:
        here = scores[("hessian", True, spec)]
        higher = scores[("hessian", True, scaled_damping(spec, 1 + step))]
        # the damping each model took (the +step variant is never the book's own cache entry)
        values = [d / (1 + step) for d in resolved_dampings(
            experiment, configs, ("hessian", True, scaled_damping(spec, 1 + step)))]
        allowed = sum(s is not None for s in here)
        row: dict[str, Any] = {"damping": str(spec), "damping_low": float(np.min(values)),
                               "damping_high": float(np.max(values)), "allowed": allowed}
        complete = allowed == len(configs) and all(s is not None for s in higher)
        for name, metrics in (("stability", lambda: between_runs(here)),
                              ("with_loo", lambda: agreement(here, loo)),
                              ("sensitivity", lambda: agreement(here, higher))):
            values_here = metrics() if complete else dict.fromkeys(stability.METRICS, np.nan)
            row.update({f"{name}_{m}": values_here[m] for m in stability.METRICS})
        rows.append(row)
    return pd.DataFrame(rows), seconds


def curvature_rows(
    experiment: Experiment, configs: Sequence[TrainConfig]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cause 7: the Hessian or the Gauss-Newton matrix, with and without the weight-decay term,
    each at damping ``"auto"``.

    Returns
    -------
    (rows of the causes table, one row per variant with its stability and its agreement with
    leave-one-out)
    """
    variants = [(kind, term, "auto") for kind in CURVATURES for term in (True, False)]
    scores, seconds = influence_scores(experiment, configs, variants)
    loo = experiment.scores(LOO, configs)
    rows, detail = [], []
    for kind, term, damping in variants:
        change = f"{kind.replace('_', '-')} {'with' if term else 'without'} the weight-decay term"
        stable = between_runs(scores[(kind, term, damping)])
        if (kind, term) != ("hessian", True):
            rows.append(_row("7. curvature", change, IF, BETWEEN, stable, seconds / 3))
        detail.append({"curvature": change, **{f"stability_{m}": stable[m] for m in stability.METRICS},
                       **{f"with_loo_{m}": v for m, v in agreement(scores[(kind, term, damping)], loo).items()
                          if m in stability.METRICS}})
    return pd.DataFrame(rows), pd.DataFrame(detail)


def target_rows(
    experiment: Experiment,
    configs: Sequence[TrainConfig],
    *,
    n_columns: int,
    steps: int,
    lr: float,
    damping: float = AUTO_DAMPING_MARGIN,
    column_seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cause 5: warm-start leave-one-out and the PBRF, on ``n_columns`` training examples drawn
    with ``column_seed`` (every metric of this cause, ours included, over those columns only).

    Returns
    -------
    (rows of the causes table, one row per (target, compared with) with the agreement metrics)
    """
    n = len(experiment.train)
    if not 2 <= n_columns <= n:
        raise ValueError(f"n_columns must lie in [2, {n}]; got {n_columns}")
    columns = draw_columns(n, n_columns, column_seed)
    loo = [s[:, columns] for s in experiment.scores(LOO, configs)]
    hess = [s[:, columns] for s in experiment.scores(IF, configs, damping="auto")]
    ggn_all, _ = influence_scores(experiment, configs, [("gauss_newton", True, "auto")])
    ggn = [s[:, columns] for s in ggn_all[("gauss_newton", True, "auto")]]
    rows = [_row("5. other targets", f"ours, on the {n_columns} examples", LOO, BETWEEN,
                 between_runs(loo))]
    detail = []
    for target, change in (("warm_start", f"warm-start LOO ({steps} steps)"),
                           ("pbrf", f"PBRF ({steps} steps)")):
        scores, seconds = response_target_scores(experiment, configs, target=target,
                                                 columns=columns, steps=steps, lr=lr,
                                                 damping=damping)
        rows.append(_row("5. other targets", change, target, BETWEEN, between_runs(scores), seconds))
        for other, name in ((loo, "leave-one-out (ours)"), (hess, "IF, Hessian"),
                            (ggn, "IF, Gauss-Newton")):
            detail.append({"target": change, "compared with": name,
                           **{m: v for m, v in agreement(scores, other).items()
                              if m in stability.METRICS}})
    for other, name in ((hess, "IF, Hessian"), (ggn, "IF, Gauss-Newton")):
        detail.append({"target": "leave-one-out (ours)", "compared with": name,
                       **{m: v for m, v in agreement(loo, other).items() if m in stability.METRICS}})
    return pd.DataFrame(rows), pd.DataFrame(detail)


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """The table at the top of page 7: each change's Pearson correlation with its verdict.

    Parameters
    ----------
    rows : DataFrame
        Rows of the functions above, the :func:`baseline_rows` among them.

    Returns
    -------
    DataFrame with columns cause, change, measured, LOO, IF (Pearson; nan where the change does
    not apply), verdict: for each method it changes, whether it moves that method's Pearson
    correlation past :func:`halfway` from ours to the paper's (empty for a change measured by its
    agreement with itself, a ceiling rather than a value between initialisations). The first two
    rows are our baseline and the paper.
    """
    base = rows[rows.cause == "baseline"].set_index("method").pearson
    ours = {LOO: float(base[LOO]), IF: float(base[IF])}
    table = [{"cause": "ours (baseline)", "change": "", "measured": BETWEEN, "LOO": ours[LOO],
              "IF": ours[IF], "verdict": ""},
             {"cause": "the paper", "change": "", "measured": BETWEEN,
              "LOO": PAPER[LOO]["pearson"], "IF": PAPER[IF]["pearson"], "verdict": ""}]
    body = rows[(rows.cause != "baseline") & rows.measured.isin([BETWEEN, "agreement with itself"])]
    for (cause, change, measured), group in body.groupby(["cause", "change", "measured"], sort=False):
        values = {LOO: np.nan, IF: np.nan}
        for _, row in group.iterrows():
            values[IF if row.method == IF else LOO] = float(row.pearson)
        # agreement with itself is a ceiling, not a value between initialisations: not judged
        verdicts = [] if measured != BETWEEN else [
            f"{'LOO' if m == LOO else 'IF'}: {verdict(values[m], ours[m], PAPER[m]['pearson'])}"
            for m in (LOO, IF) if not np.isnan(values[m])]
        table.append({"cause": cause, "change": change, "measured": measured, "LOO": values[LOO],
                      "IF": values[IF], "verdict": "; ".join(verdicts)})
    return pd.DataFrame(table)


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall-clock seconds of the ``with`` block to ``timings[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def timing_table(timings: dict[str, float], rows: pd.DataFrame,
                 extra: dict[str, float] | None = None) -> pd.DataFrame:
    """Seconds of each cause: wall-clock in this run (``timings``, keyed by cause), and the
    compute recorded in the cache entries of its variants when they were first computed (the
    ``seconds`` of its ``rows``, plus ``extra``; 0 where the cost belongs to the book's own
    entries: page 2's sweep, or Experiment.scores for the longer trainings)."""
    spent = rows.groupby("cause").seconds.sum().to_dict()
    for name, seconds in (extra or {}).items():
        spent[name] = spent.get(name, 0.0) + seconds
    return pd.DataFrame([{"cause": name, "seconds_this_run": seconds,
                          "seconds_recorded": float(spent.get(name, 0.0))}
                         for name, seconds in timings.items()])


def damping_rows(curve: pd.DataFrame) -> pd.DataFrame:
    """Rows of the causes table for the points of :func:`damping_curve` that every model allows."""
    rows = []
    for point in curve.itertuples():
        if np.isnan(point.stability_pearson):
            continue
        metrics = {m: getattr(point, f"stability_{m}") for m in stability.METRICS}
        change = (f"damping {point.damping} ({point.damping_low:.3g} to {point.damping_high:.3g})"
                  if point.damping_low != point.damping_high else f"damping {point.damping}")
        # its metrics exist only when every model allows the damping: all pairs of them
        pairs = int(point.allowed) * (int(point.allowed) - 1) // 2
        rows.append(_row("6. damping", change, IF, BETWEEN, {**metrics, "n_pairs": pairs}))
    return pd.DataFrame(rows)


def loo_bars(rows: pd.DataFrame) -> pd.DataFrame:
    """Leave-one-out's agreement with itself and between initialisations (for
    :func:`infcore.plots.noise_floor`): the baseline, the noise floor and the order variants."""
    keep = (rows.method == LOO) & rows.cause.isin(["baseline", "3. noise floor", "2. order of the rest"]) & rows.measured.isin([BETWEEN, "agreement with itself"])
    return rows[keep][["change", "measured", "pearson"]].reset_index(drop=True)


def moved(table: pd.DataFrame) -> list[str]:
    """The changes of a :func:`summary` table whose verdict moves some number to the paper's."""
    return [f"{row.cause}: {row.change}" for row in table.itertuples() if MOVES in row.verdict]


def closing_note(table: pd.DataFrame) -> str:
    """The page's closing note in Markdown: each change of a :func:`summary` table with its
    numbers and verdict, then which changes, if any, reproduce the paper's values."""
    ours, theirs = table.iloc[0], table.iloc[1]
    lines = [f"- **Our baseline**: leave-one-out {ours.LOO:.3f}, influence functions {ours.IF:.3f} "
             f"(the paper: {theirs.LOO:.3f} and {theirs.IF:.3f}; the verdict threshold is halfway, "
             f"{halfway(ours.LOO, theirs.LOO):.3f} and {halfway(ours.IF, theirs.IF):.3f})."]
    for row in table.iloc[2:].itertuples():
        numbers = ", ".join(f"{name} {value:.3f}" for name, value in
                            (("leave-one-out", row.LOO), ("influence functions", row.IF))
                            if not np.isnan(value))
        judged = f"; {row.verdict}" if row.verdict else " (a ceiling, not judged)"
        lines.append(f"- **{row.cause}**, {row.change} ({row.measured}): {numbers}{judged}.")
    movers = moved(table)
    lines.append("")
    lines.append("Moves at least halfway to the paper's value: " + ("; ".join(movers) if movers
                 else "no single candidate") + ".")
    return "\n".join(lines)


def order_diagnostics(experiment: Experiment, configs: Sequence[TrainConfig],
                      columns: Sequence[int] | None = None) -> pd.DataFrame:
    """What each order variant's leave-one-out measures: the mean over test examples of the
    correlation of a row of scores with the index of the left-out example, and the median score
    magnitude (after :func:`order_rows`, from the cache).

    A shuffling ``DataLoader`` re-seeded for every retraining draws the same permutation of the
    n - 1 positions each time, so the retraining without ``i`` sees every example after ``i``
    one position earlier: its order changes smoothly with ``i``, and the scores follow ``i``.
    ``columns``: over those training examples only.
    """
    index = np.arange(len(experiment.train)) if columns is None else np.asarray(columns)
    rows = []
    for variant in ("kept", "redrawn", "fresh"):
        scores, _ = loo_scores(experiment, configs, order_variant=variant, columns=columns)
        trend = [np.mean([np.corrcoef(row, index)[0, 1] for row in s]) for s in scores]
        rows.append({"order": variant, "correlation_with_index": float(np.mean(trend)),
                     "median_abs_score": float(np.median([np.median(np.abs(s)) for s in scores]))})
    return pd.DataFrame(rows)


def value(rows: pd.DataFrame, cause: str, change: str, method: str = LOO,
          measured: str = BETWEEN, metric: str = "pearson") -> float:
    """One number of the causes table (rows of the functions above): the ``metric`` of the row
    whose cause, change (its beginning), method and measure are these; nan if there is none."""
    hit = rows[(rows.cause == cause) & rows.change.str.startswith(change) & (rows.method == method)
               & (rows.measured == measured)]
    return float(hit[metric].iloc[0]) if len(hit) else float("nan")
