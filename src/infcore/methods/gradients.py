"""Per-example gradients, and the two heuristics built on them: Grad-Dot and Grad-Cos.

Every gradient here is that of one example's loss (``trained.loss``, cross-entropy for the models
that infcore trains; no weight-decay term) with respect to all parameters, flattened in the order of ``model.named_parameters()``. They are computed with
``torch.func.vmap`` over ``torch.func.grad``, in chunks of examples that bound the memory.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.func import grad, vmap

from infcore.data import Split
from infcore.models import Params
from infcore.training import PerExampleLoss, TrainedModel, cross_entropy, per_example_loss


def check_chunk_size(chunk_size: object) -> None:
    """Raise ValueError unless ``chunk_size`` is an integer >= 1."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")


def per_example_grads(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    chunk_size: int = 256,
    loss: PerExampleLoss = cross_entropy,
) -> torch.Tensor:
    """Gradient of each example's loss (cross-entropy by default) with respect to all parameters.

    Parameters
    ----------
    model : nn.Module
        Architecture.
    params : dict of str to Tensor
        Weights at which the gradients are taken.
    x : Tensor of shape (n, ...)
    y : Tensor of shape (n,), int64
    chunk_size : int
        Examples per vectorised call, >= 1; bounds the memory.
    loss : callable
        Per-example loss ``loss(outputs, y) -> (n,)``, see
        :func:`infcore.training.per_example_loss`.

    Returns
    -------
    Tensor of shape (n, P), in the dtype of ``params``
        Row ``i`` is the gradient for example ``i``, flattened in the order of ``params``.
    """
    check_chunk_size(chunk_size)

    def one_loss(p: Params, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return per_example_loss(model, p, xi.unsqueeze(0), yi.unsqueeze(0), loss=loss)[0]

    detached = {name: p.detach() for name, p in params.items()}
    grads = vmap(grad(one_loss), in_dims=(None, 0, 0), chunk_size=chunk_size)(detached, x, y)
    return torch.cat([grads[name].reshape(len(y), -1) for name in params], dim=1)


def _split_grads(trained: TrainedModel, params: Params, data: Split) -> torch.Tensor:
    """Per-example gradients of ``data`` under ``params``, as float64 of shape (n, P)."""
    return per_example_grads(trained.model, params, data.x, data.y, loss=trained.loss).double()


def grad_dot(trained: TrainedModel, train: Split, test: Split) -> np.ndarray:
    """Grad-Dot: dot product of the test and training gradients at the final weights.

    Parameters
    ----------
    trained : TrainedModel
    train : Split of n_train examples
    test : Split of n_test examples (their own labels define the test loss)

    Returns
    -------
    scores : ndarray of shape (n_test, n_train), float64
        ``scores[t, i] = grad L(test t) . grad L(train i)``.
    """
    g_train = _split_grads(trained, trained.params, train)
    g_test = _split_grads(trained, trained.params, test)
    return (g_test @ g_train.T).numpy()


def grad_cos(trained: TrainedModel, train: Split, test: Split) -> np.ndarray:
    """Grad-Cos: cosine similarity of the test and training gradients at the final weights.

    A zero gradient has no direction; its cosine with any other gradient is reported as 0.

    Parameters
    ----------
    trained : TrainedModel
    train : Split of n_train examples
    test : Split of n_test examples

    Returns
    -------
    scores : ndarray of shape (n_test, n_train), float64, in [-1, 1]
    """
    g_train = torch.nn.functional.normalize(_split_grads(trained, trained.params, train), dim=1)
    g_test = torch.nn.functional.normalize(_split_grads(trained, trained.params, test), dim=1)
    return (g_test @ g_train.T).numpy()
