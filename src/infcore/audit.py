"""The paper's question for any model: how much do a method's scores depend on the training run?

:func:`stability_audit` trains one model per seed with your training function, scores every
(test, training) pair with one method, and reports

* the Table 1 metrics (Pearson, Spearman, top-10% overlap) between the runs of every pair of
  seeds, each a mean over test examples with a bootstrap interval (:func:`infcore.stability.compare`);
* the Table 2 curve: how the expected scores of two disjoint halves of the seeds agree as each half
  grows (:func:`infcore.expected.expected_curve`), and the fewest models per half that reach a
  target agreement (:func:`infcore.experiments.models_to_reach`).

Contents: :func:`stability_audit`, :class:`StabilityAudit`, :func:`data_fingerprint`.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from infcore import stability
from infcore.cache import Cache
from infcore.data import Split
from infcore.expected import expected_curve
from infcore.experiments import models_to_reach
from infcore.methods import METHODS, REVISIONS, compute_scores
from infcore.own_model import Data, as_split
from infcore.training import TrainedModel

#: ``train_fn(train, seed) -> TrainedModel``: your training, with every seed derived from ``seed``
TrainFunction = Callable[[Split, int], TrainedModel]


@dataclass
class StabilityAudit:
    """What :func:`stability_audit` measured.

    Attributes
    ----------
    method : str
    seeds : list of int
    pairs : DataFrame
        One row per pair of seeds and metric: ``seed_a``, ``seed_b``, ``metric``, ``mean`` (over
        test examples), ``ci_low``, ``ci_high`` (bootstrap interval of that mean), ``n_rows``.
    summary : DataFrame
        One row per metric: ``mean`` over the pairs, and the lowest ``ci_low`` and highest
        ``ci_high`` of the pairs' intervals.
    curve : DataFrame
        :func:`infcore.expected.expected_curve` of the two halves of the seeds.
    to_reach : DataFrame
        :func:`infcore.experiments.models_to_reach` of ``curve`` for ``target`` and ``metric``.
    target : float
    metric : str
    """

    method: str
    seeds: list[int]
    pairs: pd.DataFrame
    summary: pd.DataFrame
    curve: pd.DataFrame
    to_reach: pd.DataFrame
    target: float
    metric: str

    def __str__(self) -> str:
        lines = [f"Stability of {self.method} over {len(self.seeds)} training runs "
                 f"(seeds {self.seeds}), {len(self.pairs) // len(stability.METRICS)} pairs:"]
        for row in self.summary.itertuples():
            lines.append(f"  {row.metric:<12} {row.mean:7.3f}  (pair intervals "
                         f"{row.ci_low:.3f} .. {row.ci_high:.3f})")
        means = self.curve.groupby("n_models")[self.metric].mean()
        lines.append(f"Expected scores, two disjoint sets of m models, {self.metric}: "
                     + ", ".join(f"m={m}: {v:.3f}" for m, v in means.items()))
        reach = self.to_reach.iloc[0]
        if reach["reached"]:
            lines.append(f"  {self.metric} >= {self.target} needs {reach['n_models']} models per set")
        else:
            lines.append(f"  {self.metric} >= {self.target} not reached with up to "
                         f"{int(means.index.max())} models per set (best "
                         f"{reach[self.metric]:.3f} at m={reach['n_models']})")
        return "\n".join(lines)


def data_fingerprint(data: Split) -> str:
    """SHA-256 (hex) of a split's tensors, their shapes and dtypes: part of the audit's cache key."""
    digest = hashlib.sha256()
    for tensor in (data.x, data.y):
        values = tensor.detach().cpu().contiguous()
        digest.update(f"{tuple(values.shape)} {values.dtype}".encode())
        digest.update(values.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _pair_rows(scores: Sequence[np.ndarray], seeds: Sequence[int], q: float, n_boot: int,
               confidence: float) -> pd.DataFrame:
    rows = []
    for i, j in itertools.combinations(range(len(seeds)), 2):
        for metric, s in stability.compare(scores[i], scores[j], q=q, n_boot=n_boot,
                                           confidence=confidence).items():
            rows.append({"seed_a": seeds[i], "seed_b": seeds[j], "metric": metric, "mean": s.mean,
                         "ci_low": s.ci_low, "ci_high": s.ci_high, "n_rows": s.n_rows})
    return pd.DataFrame(rows)


def stability_audit(
    train_fn: TrainFunction,
    seeds: Sequence[int],
    train_data: Data,
    test_data: Data,
    method: str,
    *,
    key: str,
    options: Mapping[str, Any] | None = None,
    target: float = 0.9,
    metric: str = "pearson",
    q: float = 90.0,
    n_boot: int = 1000,
    confidence: float = 0.95,
    progress: bool = True,
    cache: Cache | None = None,
) -> StabilityAudit:
    """Train one model per seed, score with ``method``, and measure how much the runs agree.

    Parameters
    ----------
    train_fn : callable
        ``train_fn(train, seed) -> TrainedModel``: trains on the ``Split`` it is given, drawing
        every random choice (initialisation, data order, dropout) from ``seed``, and returns the
        model wrapped with :func:`infcore.own_model.from_model` (or trained by
        :func:`infcore.training.train`).
    seeds : sequence of int
        At least 2 distinct seeds. For the expected-scores curve the first half of the seeds forms
        set A and the second half set B (an odd last seed is left out of the curve); 2 or 3 seeds
        give only the single-model baseline.
    train_data, test_data : Split, (x, y) tuple of tensors, Dataset or DataLoader
        See :func:`infcore.own_model.as_split`.
    method : str
        A name in :data:`infcore.methods.METHODS` (not ``tracin_ideal`` for your own training).
    key : str
        Names ``train_fn`` and everything it depends on (architecture, optimiser, epochs, ...)
        in the cache key. A function cannot be hashed reliably (its closure, the code it calls
        and the libraries under it may change without its name changing), so the key is yours
        to give: change it whenever the training changes, or the cached scores of the old
        training are reused.
    options : mapping, optional
        Keyword options of the method (e.g. ``{"damping": 0.01}``, ``{"lam": 1e-3}``); JSON-like
        values, they are part of the cache key.
    target : float
        Agreement of the expected scores to reach, in ``metric``.
    metric : str
        One of :data:`infcore.stability.METRICS`, for the curve's target.
    q : float
        Percentile of the top set of the overlap, 90 in the paper.
    n_boot, confidence : int, float
        Bootstrap resamples and coverage of the intervals, see :func:`infcore.stability.compare`.
    progress : bool
        Show a tqdm progress bar (one tick per seed).
    cache : Cache, optional
        Where the score matrices are kept; :meth:`infcore.cache.Cache.default` when None. The key
        holds ``key``, the seed, the method and its options, and fingerprints of the data.

    Returns
    -------
    StabilityAudit
        Printing it gives a short report.
    """
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must hold at least 2 distinct seeds, got {seeds}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if metric not in stability.METRICS:
        raise ValueError(f"metric must be one of {stability.METRICS}, got {metric!r}")
    if not isinstance(key, str) or not key:
        raise ValueError("key must be a non-empty string that names the training function")
    train, test = as_split(train_data), as_split(test_data)
    options = dict(options or {})
    cache = Cache.default() if cache is None else cache
    base = {"key": key, "method": method, "revision": REVISIONS.get(method, 1),
            "options": options, "train": data_fingerprint(train), "test": data_fingerprint(test)}
    scores = []
    for seed in tqdm(seeds, disable=not progress, desc=f"audit {method}", unit="model"):
        scores.append(cache.get_or_compute(
            "audit_scores", {**base, "seed": seed},
            lambda seed=seed: compute_scores(method, train_fn(train, seed), train, test, **options)))
    pairs = _pair_rows(scores, seeds, q, n_boot, confidence)
    summary = pairs.groupby("metric", sort=False).agg(
        mean=("mean", "mean"), ci_low=("ci_low", "min"), ci_high=("ci_high", "max")).reset_index()
    half = len(seeds) // 2
    curve = expected_curve(scores[:half], scores[half:2 * half], range(1, half + 1), q=q)
    to_reach = models_to_reach(curve.assign(method=method), threshold=target, metric=metric)
    return StabilityAudit(method, seeds, pairs, summary, curve, to_reach, target, metric)
