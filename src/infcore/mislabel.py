"""Finding mislabelled training examples by their self-influence.

Flip the labels of a known share of the training set, train on it, and rank the training examples
by the influence each one has on itself (its score with itself as the test example): an example
whose label contradicts the rest of its class can be fitted only by its own gradient steps, so its
self-influence is high (Koh and Liang 2017; Pruthi et al. 2020). The ranking is judged as
kronfluence and dattri do, by the area under the precision-recall curve and by the share of the
flipped labels found when the top 10% or 20% of the ranking is inspected.

What it holds:

flip_labels
    A training split with a random share of its labels flipped, and which ones.
SELF_INFLUENCE
    For each method, whether its self-influence is informative, and why not where it is not.
self_influence
    The diagonal of a score matrix whose test set is the training set.
tracin_ideal_self_influence
    TracInIdeal's diagonal from one replay of training, without the full matrix.
detection
    AUPRC and the share found in the top fractions, for one ranking.
mislabel_study
    The whole protocol on one task: models, self-influence of each method, single and expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score
from tqdm import tqdm

from infcore.cache import Cache
from infcore.data import Split
from infcore.experiments import Experiment, Task, check_methods, model_sets
from infcore.parallel import run_chunks
from infcore.models import Params
from infcore.training import TrainConfig, TrainedModel, accuracy, losses_float64
from infcore.training import train as train_model

#: why a method's self-influence cannot rank examples (methods absent here are informative)
DEGENERATE: dict[str, str] = {
    "grad_cos": "the cosine of a gradient with itself is 1 for every example, so it ranks nothing",
}
#: methods scored on fewer models: one retraining per training example
COSTLY = ("leave_one_out",)
#: the shares of the ranking inspected (kronfluence's and dattri's convention)
INSPECTED = (0.1, 0.2)


def flip_labels(train: Split, fraction: float = 0.1, seed: int = 0) -> tuple[Split, np.ndarray]:
    """``train`` with the labels of ``round(fraction * n)`` random examples flipped (binary, 0 <-> 1).

    Returns
    -------
    flipped_split : Split
        Same images, some labels flipped.
    flipped : ndarray of shape (n,), bool
        Which examples were flipped.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1); got {fraction!r}")
    if not set(train.y.unique().tolist()) <= {0, 1}:
        raise ValueError("flip_labels flips binary labels (0 and 1)")
    n = len(train)
    k = round(fraction * n)
    if k < 1:
        raise ValueError(f"fraction={fraction} of {n} examples flips none")
    flipped = np.zeros(n, dtype=bool)
    flipped[np.random.default_rng(seed).choice(n, size=k, replace=False)] = True
    y = train.y.clone()
    mask = torch.as_tensor(flipped)
    y[mask] = 1 - y[mask]
    return Split(train.x, y), flipped


def self_influence(scores: ArrayLike) -> np.ndarray:
    """Each training example's score on itself: the diagonal of an (n_train, n_train) matrix.

    Parameters
    ----------
    scores : array_like of shape (n_train, n_train)
        A method's scores with the training set as the test set.

    Returns
    -------
    ndarray of shape (n_train,)
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"self-influence needs the training set as the test set, a square matrix; "
                         f"got shape {scores.shape}")
    return np.diagonal(scores).copy()


def tracin_ideal_self_influence(trained: TrainedModel, train: Split, *, atol: float = 1e-5) -> np.ndarray:
    """TracInIdeal's self-influence, without its (n_train, n_train) matrix.

    The diagonal of :func:`infcore.methods.tracin.tracin_ideal` with ``train`` as the test set: replaying
    the batch-size-1 training, each step adds ``loss before - loss after`` of its own example to
    that example's score (float64 losses, as there). The full matrix evaluates every training loss
    after every step, n_train times the work of this replay.

    Returns
    -------
    ndarray of shape (n_train,)

    Raises
    ------
    ValueError
        When the model was not trained with batch size 1 by infcore, or the replay does not end at
        ``trained.params``.
    """
    if trained.config is None or trained.config.batch_size != 1:
        raise ValueError("TracInIdeal's self-influence replays a batch-size-1 training by infcore "
                         f"(trained.config.batch_size == 1); got config {trained.config}")
    scores = np.zeros(len(train))

    def credit(step: int, batch_index: torch.Tensor, before: Params, after: Params) -> None:
        i = int(batch_index[0])
        x, y = train.x[i:i + 1], train.y[i:i + 1]
        change = (losses_float64(trained.model, before, x, y)
                  - losses_float64(trained.model, after, x, y))
        scores[i] += float(change[0])

    replay = train_model(trained.config, train, model=trained.model, exclude=trained.excluded,
                         on_step=credit)
    for name, p in trained.params.items():
        if not torch.allclose(replay.params[name], p, rtol=0.0, atol=atol):
            raise ValueError(f"replaying the training does not reproduce trained.params ({name!r} "
                             f"differs by {(replay.params[name] - p).abs().max().item():.3g} > "
                             f"atol={atol:g}): was the model trained on `train` with "
                             "trained.config, and with as many torch threads as this replay?")
    return scores


def detection(ranking: ArrayLike, flipped: ArrayLike, inspected: Sequence[float] = INSPECTED) -> dict[str, float]:
    """How well ``ranking`` (highest first) finds the ``flipped`` examples.

    Returns
    -------
    dict with ``auprc`` (average precision, scikit-learn; chance is the flipped share) and, for
    each share q of ``inspected``, ``found_q`` (e.g. ``found_10``): the fraction of all flipped
    examples that are among the ``ceil(q * n)`` highest-ranked, a recall (chance is q).
    """
    ranking = np.asarray(ranking, dtype=np.float64)
    flipped = np.asarray(flipped, dtype=bool)
    if ranking.shape != flipped.shape or ranking.ndim != 1:
        raise ValueError(f"ranking and flipped must be 1-D of the same length; got {ranking.shape} "
                         f"and {flipped.shape}")
    if not flipped.any():
        raise ValueError("no example is flipped")
    order = np.argsort(-ranking, kind="stable")
    result = {"auprc": float(average_precision_score(flipped, ranking))}
    for q in inspected:
        top = order[:int(np.ceil(round(q * len(ranking), 9)))]
        result[f"found_{round(100 * q)}"] = float(flipped[top].sum() / flipped.sum())
    return result


def _tracin_ideal_self(experiment: Experiment, configs: Sequence[TrainConfig]) -> list[np.ndarray]:
    """:func:`tracin_ideal_self_influence` of each config's model, cached per model.

    The replays run where the experiment's scores run (``experiment.execution``): its loky or dask
    workers train the models, and a batch-size-1 replay reproduces a training only with the same
    number of torch threads (a replay on 2 threads of a model trained on 1 ended 0.019 away).
    """
    keys = [{**experiment._scores_key(c, "tracin_ideal", {}), "self_influence": True}
            for c in configs]
    todo = [i for i, key in enumerate(keys) if not experiment.cache.has("self_influence", key)]
    models = experiment.models([configs[i] for i in todo]) if todo else []
    values = run_chunks(tracin_ideal_self_influence, [(m, experiment.train) for m in models],
                        **experiment.execution)
    computed = {}
    for i, value in zip(todo, tqdm(values, total=len(todo), desc="tracin_ideal self-influence",
                                   disable=not experiment.progress or not todo)):
        computed[i] = value
        experiment.cache.save("self_influence", keys[i], value)
    return [computed[i] if i in computed else experiment.cache.load("self_influence", key)
            for i, key in enumerate(keys)]


@dataclass
class MislabelStudy:
    """Results of the mislabel protocol on one task.

    Attributes
    ----------
    detection : DataFrame
        One row per method and number of models averaged: method, n_models, n_groups, and the mean
        (over disjoint groups of that many models) of each metric of :func:`detection`.
    flipped : ndarray of shape (n_train,), bool
    accuracy : DataFrame
        Clean test accuracy and training accuracy on the flipped labels, per model (batch-size-1
        models of TracInIdeal included, under batch_size).
    models_scored : dict of method to int
        How many models each method's self-influence was computed for.
    """

    detection: pd.DataFrame
    flipped: np.ndarray
    accuracy: pd.DataFrame
    models_scored: dict[str, int]


def mislabel_study(
    task: Task,
    methods: Sequence[str],
    base: TrainConfig,
    ideal_base: TrainConfig,
    n_models: int,
    sizes: Sequence[int],
    fraction: float = 0.1,
    flip_seed: int = 0,
    costly_models: int = 1,
    options: dict[str, dict[str, Any]] | None = None,
    cache: Cache | None = None,
    device: str = "cpu",
    progress: bool = True,
    backend: str | None = None,
    n_jobs: int | None = None,
    chunk_size: int = 64,
) -> MislabelStudy:
    """Flip labels, train ``n_models`` models, rank the training examples by self-influence.

    Leave-one-out (one retraining per training example) is scored on only the first
    ``costly_models`` models, every other method on all ``n_models``; TracInIdeal's
    self-influence comes from :func:`tracin_ideal_self_influence` (one replay of each of its
    batch-size-1 models), cached. Sizes larger than a method's models are left out of
    its rows. Methods in :data:`DEGENERATE` are refused.

    Returns
    -------
    MislabelStudy
    """
    methods = check_methods(methods)
    degenerate = [m for m in methods if m in DEGENERATE]
    if degenerate:
        raise ValueError(f"self-influence does not rank examples for {degenerate}: "
                         + "; ".join(DEGENERATE[m] for m in degenerate))
    if n_models < 1 or costly_models < 1:
        raise ValueError(f"n_models and costly_models must be >= 1; got {n_models}, {costly_models}")
    clean_train, clean_test = task.load()
    train, flipped = flip_labels(clean_train, fraction, flip_seed)
    # the training set is also the test set: each method then scores every example on itself
    key = {**asdict(task), "flip": {"fraction": fraction, "seed": flip_seed}, "test": "train"}
    experiment = Experiment(task, cache, splits=(train, train), task_key=key, device=device,
                            progress=progress, backend=backend, n_jobs=n_jobs, chunk_size=chunk_size)
    options = options or {}
    rows, scored, accuracies = [], {}, []
    for method in methods:
        count = min(costly_models, n_models) if method in COSTLY else n_models
        configs = model_sets(count, ideal_base if method == "tracin_ideal" else base)
        if method == "tracin_ideal":
            per_model = _tracin_ideal_self(experiment, configs)
        else:
            per_model = [self_influence(s) for s in
                         experiment.scores(method, configs, **options.get(method, {}))]
        scored[method] = count
        for m in sorted(set(sizes)):
            groups = [per_model[g * m:(g + 1) * m] for g in range(count // m)]
            if not groups:
                continue
            metrics = pd.DataFrame([detection(np.mean(g, axis=0), flipped) for g in groups])
            rows.append({"method": method, "n_models": m, "n_groups": len(groups),
                         **metrics.mean().to_dict()})
    kinds = [(base, n_models)]
    if "tracin_ideal" in methods:
        kinds.append((ideal_base, n_models))
    for config, count in kinds:
        for model in experiment.models(model_sets(count, config)):
            accuracies.append({"batch_size": config.batch_size,
                               "clean_test_accuracy": accuracy(model, clean_test),
                               "train_accuracy_flipped": accuracy(model, train)})
    return MislabelStudy(pd.DataFrame(rows), flipped, pd.DataFrame(accuracies), scored)
