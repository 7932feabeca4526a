"""The linear datamodeling score (LDS): do a method's scores predict what training on a subset does?

Ilyas et al. (2022, "Datamodels") and Park et al. (2023, "TRAK") judge attribution scores by
counterfactual prediction: draw random subsets of a fraction ``alpha`` of the training set, train
models on each, and ask, for each test example, whether the sum of the method's scores over a
subset's members ranks the subsets as their models' outputs on that example do (a Spearman
correlation across subsets). dattri, quanda and kronfluence use it as their main benchmark.

What it holds:

draw_subsets
    M random subsets of a training set, as bool masks.
margins
    The output the score predicts: margin of the true class, in float64.
subset_outputs
    Train (cached) models on each subset with several seeds; their test margins and losses.
linear_datamodeling_score
    The LDS of one score matrix, per test example and averaged, with a bootstrap interval.

Sign. ``scores[t, i] > 0`` means that training on ``i`` lowers the loss on ``t`` (see
:mod:`infcore.methods`), so a subset whose members have large summed scores should have a low test
loss and a large margin: the LDS correlates the summed scores with the margin (equivalently,
minus the loss), and a good method has an LDS near +1. Read the other way, as leave-one-out is
defined (``L_{D \\ i} - L_D``): dropping the examples outside a subset is predicted to raise the
test loss by the sum of their scores, and the sum over all examples is the same for every subset.

Why the margin and not the loss. With ``margin = logit_y - logsumexp(other logits)`` the
cross-entropy is ``softplus(-margin)``, a decreasing function of it, so for a single model the two
give the same Spearman correlation. They differ once the outputs are averaged over training seeds:
the loss of a confidently classified example saturates near 0 while the margin stays linear in the
logits, so the seed average of margins keeps the ordering of subsets that the averaged losses
flatten. The margin is also TRAK's choice of output, and a method's scores for the loss differ
from those for the margin of the same example by one positive factor per test example, which the
rank correlation ignores.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch.func import functional_call
from tqdm import tqdm

from infcore import stability
from infcore.data import Split, fingerprint
from infcore.experiments import Experiment, model_sets
from infcore.training import TrainConfig, TrainedModel, losses_float64, train_many

#: seeds of the subset models start here: far from the models of pages 2, 4 and 5 (0..39), so that
#: no subset model shares an initialisation with a model whose scores it judges
SEED_OFFSET = 100_000
#: the outputs :func:`subset_outputs` returns
OUTPUTS = ("margin", "loss")


def draw_subsets(n_train: int, n_subsets: int = 100, alpha: float = 0.5, seed: int = 0) -> np.ndarray:
    """``n_subsets`` random subsets of ``round(alpha * n_train)`` training examples each.

    Parameters
    ----------
    n_train : int
    n_subsets : int
        M, >= 2 (a correlation across subsets needs two).
    alpha : float
        Fraction of the training set in each subset, in (0, 1).
    seed : int

    Returns
    -------
    ndarray of shape (n_subsets, n_train), bool
    """
    if isinstance(n_subsets, bool) or not isinstance(n_subsets, (int, np.integer)) or n_subsets < 2:
        raise ValueError(f"n_subsets must be an integer >= 2; got {n_subsets!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    size = round(alpha * n_train)
    if not 1 <= size < n_train:
        raise ValueError(f"alpha={alpha} of n_train={n_train} keeps {size} examples; need 1 to "
                         f"{n_train - 1}")
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_subsets, n_train), dtype=bool)
    for j in range(n_subsets):
        masks[j, rng.choice(n_train, size=size, replace=False)] = True
    return masks


def margins(trained: TrainedModel, data: Split) -> np.ndarray:
    """Margin of each example's true class, ``logit_y - logsumexp(other logits)``, in float64.

    Returns
    -------
    ndarray of shape (n,)
    """
    params = {k: v.double() for k, v in trained.params.items()}
    with torch.no_grad():
        logits = functional_call(trained.model, params, (data.x.double(),))
    true = logits.gather(1, data.y.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, data.y.view(-1, 1), float("-inf"))
    return (true - torch.logsumexp(others, dim=1)).cpu().numpy()


@dataclass(frozen=True)
class SubsetOutputs:
    """Test outputs of models trained on random subsets of the training set.

    Attributes
    ----------
    subsets : ndarray of shape (M, n_train), bool
    margin : ndarray of shape (M, n_seeds, n_test)
        :func:`margins` of each subset's models on the test set.
    loss : ndarray of shape (M, n_seeds, n_test)
        Their test losses (cross-entropy, float64).
    configs : list of TrainConfig
        The ``M * n_seeds`` configs, subset j's seed r at ``j * n_seeds + r``.
    """

    subsets: np.ndarray
    margin: np.ndarray
    loss: np.ndarray
    configs: list[TrainConfig]

    def mean(self, output: str = "margin") -> np.ndarray:
        """``output`` averaged over the seeds of each subset: shape (M, n_test)."""
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {list(OUTPUTS)}; got {output!r}")
        return getattr(self, output).mean(axis=1)

    def target(self, output: str = "margin") -> np.ndarray:
        """What the summed scores predict, larger for a better fit: the seed-averaged margin, or
        minus the seed-averaged loss; shape (M, n_test)."""
        return self.mean(output) if output == "margin" else -self.mean(output)


def _subset_key(experiment: Experiment, config: TrainConfig, subset: np.ndarray) -> dict:
    return {**experiment._model_key(config), "subset": {
        "n_kept": int(subset.sum()), "sha256": hashlib.sha256(np.packbits(subset).tobytes()).hexdigest()},
        "test": {"n": len(experiment.test), "sha256": fingerprint(experiment.test)}}


def subset_outputs(
    experiment: Experiment,
    base: TrainConfig,
    subsets: np.ndarray,
    n_seeds: int = 1,
    seed_offset: int = SEED_OFFSET,
) -> SubsetOutputs:
    """Train ``n_seeds`` models on each subset and record their test margins and losses (cached).

    Model r of subset j has the config ``model_sets(M * n_seeds, base, seed_offset)[j * n_seeds +
    r]`` (its own initialisation and order seeds) and visits only the subset's examples, in the
    order :func:`~infcore.training.epoch_order` gives them. Only the outputs are cached (one entry
    per model, keyed by the model's key, the subset's hash and the test split), not the weights;
    the missing models are trained together with :func:`~infcore.training.train_many`.

    Parameters
    ----------
    experiment : Experiment
        The task; its training split is the one the subsets index.
    base : TrainConfig
        Hyperparameters of the subset models (seeds are replaced).
    subsets : ndarray of shape (M, n_train), bool
        E.g. :func:`draw_subsets`.
    n_seeds : int
        Models per subset, >= 1; the LDS averages their outputs.
    seed_offset : int
        First seed of the subset models.

    Returns
    -------
    SubsetOutputs
    """
    subsets = np.asarray(subsets)
    if subsets.dtype != bool or subsets.ndim != 2 or subsets.shape[1] != len(experiment.train):
        raise ValueError(f"subsets must be a bool array of shape (M, {len(experiment.train)}); got "
                         f"{subsets.dtype} of shape {subsets.shape}")
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, (int, np.integer)) or n_seeds < 1:
        raise ValueError(f"n_seeds must be an integer >= 1; got {n_seeds!r}")
    configs = model_sets(len(subsets) * n_seeds, base, seed_offset)
    masks = [subsets[k // n_seeds] for k in range(len(configs))]
    keys = [_subset_key(experiment, c, m) for c, m in zip(configs, masks)]
    todo = [k for k, key in enumerate(keys) if not experiment.cache.has("subset_outputs", key)]
    values: dict[int, np.ndarray] = {}
    step = experiment.chunk_size
    with tqdm(total=len(todo), desc="subset models", disable=not experiment.progress or not todo) as bar:
        for start in range(0, len(todo), step):
            batch = todo[start:start + step]
            trained = train_many([configs[k] for k in batch], experiment.train,
                                 model=experiment.model, keep=[masks[k] for k in batch],
                                 device=experiment.device, chunk_size=step, **experiment.execution)
            for k, model in zip(batch, trained):
                loss = losses_float64(model.model, model.params, experiment.test.x,
                                      experiment.test.y).cpu().numpy()
                values[k] = np.stack([margins(model, experiment.test), loss])
                experiment.cache.save("subset_outputs", keys[k], values[k])
            bar.update(len(batch))
    stacked = np.stack([values[k] if k in values else experiment.cache.load("subset_outputs", key)
                        for k, key in enumerate(keys)])
    shape = (len(subsets), n_seeds, len(experiment.test))
    return SubsetOutputs(subsets, stacked[:, 0].reshape(shape), stacked[:, 1].reshape(shape), configs)


@dataclass(frozen=True)
class LDS:
    """The linear datamodeling score of one score matrix.

    Attributes
    ----------
    per_test : ndarray of shape (n_test,)
        Spearman correlation across subsets for each test example (nan where the outputs or the
        predictions are the same for every subset).
    mean : float
        Mean over the test examples with a defined correlation.
    low, high : float
        Bootstrap percentile interval of the mean, over resampled test examples.
    n_undefined : int
        Test examples left out of the mean.
    """

    per_test: np.ndarray
    mean: float
    low: float
    high: float
    n_undefined: int


def linear_datamodeling_score(
    scores: ArrayLike,
    subsets: ArrayLike,
    outputs: ArrayLike,
    *,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> LDS:
    """LDS: Spearman correlation, across subsets, of summed scores and the subset models' outputs.

    For test example t and subset S_j the linear datamodel predicts ``sum_{i in S_j} scores[t, i]``;
    the LDS of t is the Spearman correlation over j between these predictions and
    ``outputs[j, t]``, and the score is its mean over test examples.

    Parameters
    ----------
    scores : array_like of shape (n_test, n_train)
        A method's scores, positive for helpful examples (so they predict a larger margin).
    subsets : array_like of shape (M, n_train), bool
    outputs : array_like of shape (M, n_test)
        The output to predict, larger for a better fit: the margin (:meth:`SubsetOutputs.target`),
        or minus the loss.
    n_bootstrap : int
        Resamples of the test examples for the interval.
    level : float
        Coverage of the interval, in (0, 1).
    seed : int
        Seed of the resampling.

    Returns
    -------
    LDS
    """
    scores = np.asarray(scores, dtype=np.float64)
    subsets = np.asarray(subsets)
    outputs = np.asarray(outputs, dtype=np.float64)
    if scores.ndim != 2 or subsets.ndim != 2 or outputs.ndim != 2:
        raise ValueError("scores, subsets and outputs must be 2-D: (n_test, n_train), (M, n_train), "
                         f"(M, n_test); got {scores.shape}, {subsets.shape}, {outputs.shape}")
    if subsets.shape != (outputs.shape[0], scores.shape[1]) or outputs.shape[1] != scores.shape[0]:
        raise ValueError(f"shapes do not match: scores {scores.shape} (n_test, n_train), subsets "
                         f"{subsets.shape} (M, n_train), outputs {outputs.shape} (M, n_test)")
    if not (np.all(np.isfinite(scores)) and np.all(np.isfinite(outputs))):
        raise ValueError("scores and outputs must be finite")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level!r}")
    predicted = subsets.astype(np.float64) @ scores.T  # (M, n_test)
    per_test = stability.row_spearman(predicted.T, outputs.T)
    defined = per_test[~np.isnan(per_test)]
    if len(defined) == 0:
        raise ValueError("the LDS is undefined for every test example (constant outputs or "
                         "predictions across subsets)")
    rng = np.random.default_rng(seed)
    means = defined[rng.integers(0, len(defined), size=(n_bootstrap, len(defined)))].mean(axis=1)
    tail = (1 - level) / 2
    return LDS(per_test, float(defined.mean()), float(np.quantile(means, tail)),
               float(np.quantile(means, 1 - tail)), int(len(per_test) - len(defined)))


def lds_curve(
    per_model: Sequence[np.ndarray], outputs: SubsetOutputs, sizes: Sequence[int],
    output: str = "margin", *, n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0,
) -> list[dict]:
    """LDS of expected scores over disjoint groups of m models, for each m in ``sizes``.

    The models are taken in order, ``len(per_model) // m`` groups of m; each group's expected
    scores (the mean of its members') get an LDS, and the rows report the mean over groups (for
    m = 1: over the single models) with the lowest and highest group, and a bootstrap interval of
    that mean: the test examples are resampled (the same ones for every group) and the mean over
    groups of each group's mean over the drawn examples is taken, ``n_bootstrap`` times.

    Returns
    -------
    list of dicts with n_models, n_groups, lds (mean over groups), lds_min, lds_max, and low and
    high (the bootstrap percentile interval of ``lds`` at ``level``)
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level!r}")
    subsets, target = outputs.subsets, outputs.target(output)
    rows = []
    for m in sizes:
        groups = [per_model[g * m:(g + 1) * m] for g in range(len(per_model) // m)]
        if not groups:
            raise ValueError(f"size {m} exceeds the {len(per_model)} models")
        results = [linear_datamodeling_score(np.mean(group, axis=0), subsets, target,
                                             n_bootstrap=1)
                   for group in groups]
        values = [r.mean for r in results]
        per_test = np.stack([r.per_test for r in results])  # (groups, n_test), nan if undefined
        drawn = np.random.default_rng(seed).integers(0, per_test.shape[1],
                                                     size=(n_bootstrap, per_test.shape[1]))
        with warnings.catch_warnings():  # a resample of only undefined examples: nan, dropped
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(np.nanmean(per_test[:, drawn], axis=2), axis=0)
        tail = (1 - level) / 2
        rows.append({"n_models": m, "n_groups": len(groups), "lds": float(np.mean(values)),
                     "lds_min": float(np.min(values)), "lds_max": float(np.max(values)),
                     "low": float(np.nanquantile(means, tail)),
                     "high": float(np.nanquantile(means, 1 - tail))})
    return rows
