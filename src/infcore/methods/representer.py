"""Representer point selection (Yeh et al. 2018).

The features ``f`` of the last hidden layer are frozen and the last layer ``W`` (no bias) is
refitted to a stationary point of ``mean_i L(W f_i, y_i) + lam * ||W||^2``. Stationarity gives
``W = sum_i alpha_i f_i^T`` with ``alpha_i = -1 / (2 lam n) dL_i / dPhi_i`` (``Phi = W f``, the
pre-activation output), so every logit of a test example splits exactly into one term per training
example: ``Phi(x_t) = sum_i alpha_i (f_i . f_t)``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad
from torch.func import hessian as torch_hessian

from infcore.data import Split
from infcore.errors import MissingPartError
from infcore.models import Params
from infcore.training import PerExampleLoss, TrainedModel, cross_entropy


def last_hidden(model: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """``model.features(x)`` under ``params``: the last hidden layer, of shape (n, n_features).

    Raises
    ------
    MissingPartError
        When ``model`` has no ``features`` method.
    """
    if not callable(getattr(model, "features", None)):
        raise MissingPartError(
            f"representer needs the model's last hidden layer: {type(model).__name__} has no "
            "features(x) method; add one that returns the input of the last (bias-free) linear "
            "layer, so that forward(x) == head(features(x))"
        )
    network = copy.deepcopy(model)
    network.load_state_dict(params)
    with torch.no_grad():
        return network.features(x)


def _last_layer(trained: TrainedModel, features: torch.Tensor, x: torch.Tensor) -> str:
    """Name of the last-layer weight ``W``, checked to give the logits as ``features @ W.T``."""
    name = list(trained.params)[-1]
    weight = trained.params[name]
    with torch.no_grad():
        logits = functional_call(trained.model, trained.params, (x,))
    if weight.dim() != 2 or weight.shape[1] != features.shape[1] or not torch.allclose(
        features @ weight.T, logits, rtol=1e-4, atol=1e-5
    ):
        raise ValueError(
            "representer needs a model whose logits are features(x) @ W.T, with W its last "
            f"parameter and no bias; {name!r} of shape {tuple(weight.shape)} does not give them"
        )
    return name


#: a Newton decrease below this many float64 epsilons of the objective's terms is lost in rounding
_ROUNDING = 1e3 * torch.finfo(torch.float64).eps


def refit_last_layer(
    features: torch.Tensor,
    y: torch.Tensor,
    start: torch.Tensor,
    lam: float,
    *,
    tol: float = 1e-10,
    max_iter: int = 100,
    loss: PerExampleLoss = cross_entropy,
) -> torch.Tensor:
    """Minimise ``mean_i L(W f_i, y_i) + lam * ||W||^2`` over ``W`` by Newton's method (float64).

    For the cross-entropy (and any convex loss) the problem is strictly convex for ``lam > 0``;
    backtracking keeps every step a descent step.

    Parameters
    ----------
    features : Tensor of shape (n, n_features)
    y : Tensor of shape (n,), int64
    start : Tensor of shape (n_classes, n_features)
        Initial weights (the trained last layer, usually close to the optimum).
    lam : float
        Penalty coefficient, > 0.
    tol : float
        Stop when the gradient's Euclidean norm is at most ``tol``.
    max_iter : int
        Most Newton steps.
    loss : callable
        Per-example loss ``L(logits, y) -> (n,)``; cross-entropy by default.

    Returns
    -------
    Tensor of shape (n_classes, n_features), float64

    Raises
    ------
    RuntimeError
        When the gradient norm is still above ``tol`` after ``max_iter`` steps.
    """
    f64 = features.double()
    shape = start.shape

    def objective(w: torch.Tensor) -> torch.Tensor:
        return loss(f64 @ w.reshape(shape).T, y).mean() + lam * (w * w).sum()

    def magnitude(w: torch.Tensor) -> torch.Tensor:
        """The size of the objective's terms, which sets the rounding of their sum."""
        return loss(f64 @ w.reshape(shape).T, y).abs().mean() + lam * (w * w).sum()

    w = start.detach().double().reshape(-1)
    for _ in range(max_iter):
        gradient = grad(objective)(w)
        if gradient.norm() <= tol:
            return w.reshape(shape)
        step = torch.linalg.solve(torch_hessian(objective)(w), gradient)
        value, size = objective(w), 1.0
        # Near the optimum a Newton step promises a decrease (g . step / 2) below the rounding of
        # the objective, a sum over n examples; the sufficient-decrease test then fails on
        # rounding noise alone and the step would shrink to nothing. There the full step is taken:
        # Newton's method converges quadratically from so close.
        if gradient @ step > _ROUNDING * magnitude(w):
            while (objective(w - size * step) > value - 1e-4 * size * (gradient @ step)
                   and size > 1e-10):
                size /= 2
        w = w - size * step
    raise RuntimeError(
        f"refitting the last layer did not reach a gradient norm <= {tol:g} in {max_iter} Newton "
        f"steps (norm {grad(objective)(w).norm().item():.3g})"
    )


def representer_weights(
    trained: TrainedModel, train: Split, *, lam: float | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The refitted last layer and the representer decomposition of its weights.

    Parameters
    ----------
    trained : TrainedModel
    train : Split of n examples
    lam : float, optional
        Penalty ``lam * ||W||^2``, > 0; by default ``trained.weight_decay / 2``, the penalty of the
        training objective (a model trained without weight decay needs an explicit ``lam``).

    Returns
    -------
    alpha : Tensor of shape (n, n_classes), float64
        ``-1 / (2 lam n) dL_i / dPhi_i`` at the refitted weights.
    features : Tensor of shape (n, n_features), float64
        Last hidden layer of the training examples.
    weight : Tensor of shape (n_classes, n_features), float64
        Refitted last layer; equals ``alpha.T @ features`` at stationarity.
    """
    lam = trained.weight_decay / 2 if lam is None else lam
    is_number = isinstance(lam, (int, float)) and not isinstance(lam, bool)
    if not is_number or not math.isfinite(lam) or lam <= 0:
        raise ValueError(
            f"lam must be a finite number > 0 (by default weight_decay / 2, which needs "
            f"weight_decay > 0), got {lam!r}"
        )
    features = last_hidden(trained.model, trained.params, train.x)
    name = _last_layer(trained, features, train.x)
    weight = refit_last_layer(features, train.y, trained.params[name], lam, loss=trained.loss)
    features = features.double()
    # the loss is per example, so the gradient of its sum holds each example's dL_i / dPhi_i
    d_loss = grad(lambda phi: trained.loss(phi, train.y).sum())(features @ weight.T)
    alpha = -d_loss / (2 * lam * len(train))
    return alpha, features, weight


def representer(
    trained: TrainedModel, train: Split, test: Split, *, lam: float | None = None
) -> np.ndarray:
    """Representer point scores: ``alpha_i[y_t] * f_i . f_t``.

    The term of training example ``i`` in the test example's logit of its own label, so positive
    scores support the test label.

    Parameters
    ----------
    trained : TrainedModel
        Its model must have ``features(x)`` and logits ``features(x) @ W.T`` (like ``SmallCNN``):
        the head is its last parameter, a linear layer without bias.
    train : Split of n_train examples
    test : Split of n_test examples
    lam : float, optional
        Penalty of the refit, > 0; by default ``trained.weight_decay / 2``.

    Returns
    -------
    scores : ndarray of shape (n_test, n_train), float64
    """
    alpha, features, _ = representer_weights(trained, train, lam=lam)
    test_features = last_hidden(trained.model, trained.params, test.x).double()
    kernel = test_features @ features.T  # (n_test, n_train)
    return (alpha[:, test.y].T * kernel).numpy()
