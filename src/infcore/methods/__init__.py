"""Influence methods: each scores every (test, training) pair with one shared signature.

``method(trained, train, test, **options) -> ndarray of shape (n_test, n_train)``, float64, where
``scores[t, i]`` is the influence of training example ``i`` on test example ``t`` and positive
means helpful (training on ``i`` lowers the loss on ``t``). :data:`METHODS` maps the book's method
names to the functions; :func:`compute_scores` calls one by name, after checking its inputs
(finite, non-empty, fitting the model, and ``train`` the very split the model was trained on) and
before returning scores that it has checked to be finite.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from infcore.data import Split, fingerprint
from infcore.methods.gradients import grad_cos, grad_dot, per_example_grads
from infcore.methods.influence import hessian, influence_function
from infcore.methods.loo import leave_one_out
from infcore.methods.representer import representer
from infcore.methods.tracin import tracin_cp, tracin_ideal
from infcore.training import TrainedModel, check_fits

Method = Callable[..., np.ndarray]

#: Revision of a method's numbers, part of the cache key of its scores (a method missing here is at
#: its first): raised whenever the same inputs give other scores. Revision 2 of leave-one-out and
#: TracInIdeal evaluates their loss differences in float64 (:func:`infcore.training.losses_float64`).
REVISIONS: dict[str, int] = {"leave_one_out": 2, "tracin_ideal": 2}

#: the book's method names, mapped to the functions that compute their scores
METHODS: dict[str, Method] = {
    "leave_one_out": leave_one_out,
    "influence_function": influence_function,
    "tracin_ideal": tracin_ideal,
    "tracin_cp": tracin_cp,
    "representer": representer,
    "grad_dot": grad_dot,
    "grad_cos": grad_cos,
}


def compute_scores(
    name: str, trained: TrainedModel, train: Split, test: Split, **options: object
) -> np.ndarray:
    """Scores of the method called ``name``.

    Parameters
    ----------
    name : str
        One of the keys of :data:`METHODS`.
    trained : TrainedModel
    train : Split of n_train examples
    test : Split of n_test examples
    **options
        Keyword options of that method (e.g. ``damping`` for ``influence_function``).

    Returns
    -------
    scores : ndarray of shape (n_test, n_train), float64 (``leave_one_out`` with ``columns``:
        (n_test, len(columns)))

    Raises
    ------
    ValueError
        For an unknown method; a split that is empty, not finite or does not fit the model
        (naming the split and the first bad example or its shape); a ``train`` split other than
        the one the model was trained on (naming both fingerprints); scores that hold nan or inf
        (naming the method and the model).
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(METHODS)}")
    for split, split_name in ((train, "train"), (test, "test")):
        check_fits(trained.model, trained.params, split, split_name)
    if train.x.shape[1:] != test.x.shape[1:]:
        raise ValueError(f"train and test inputs must have the same shape per example, got "
                         f"{tuple(train.x.shape)} and {tuple(test.x.shape)}")
    _check_trained_on(trained, train)
    scores = METHODS[name](trained, train, test, **options)
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ValueError(f"{name} gave {np.count_nonzero(bad)} nan or inf scores of {bad.size} for "
                         f"the model trained with {trained.config}; no metric can use them")
    return scores


def _check_trained_on(trained: TrainedModel, train: Split) -> None:
    """Refuse ``train`` unless it is the split ``trained`` recorded (if it recorded one)."""
    if trained.train_fingerprint is None:
        return
    given = fingerprint(train)
    if len(train) != trained.n_train or given != trained.train_fingerprint:
        raise ValueError(
            f"the model was trained on a split of {trained.n_train} examples with fingerprint "
            f"{trained.train_fingerprint[:16]}, but train has {len(train)} examples with "
            f"fingerprint {given[:16]}: score a model only against its own training split"
        )


__all__ = [
    "METHODS",
    "REVISIONS",
    "compute_scores",
    "grad_cos",
    "grad_dot",
    "hessian",
    "influence_function",
    "leave_one_out",
    "per_example_grads",
    "representer",
    "tracin_cp",
    "tracin_ideal",
]
