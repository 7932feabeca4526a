"""Influence functions (Koh and Liang 2017) with the exact Hessian of the training objective.

The network is small enough (3,008 parameters) for the Hessian to be formed exactly and factorised,
so no iterative inverse-Hessian approximation is needed. :func:`hessian` builds it one parameter
tensor at a time from Hessian-vector products (forward-over-reverse, vectorised over basis vectors),
and only for the parameters from that tensor onwards, with the earlier ones held fixed: directions
in a late layer then need no pass through the early layers, and the rest follows from symmetry.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.func import grad, jvp, vmap

from infcore.data import Split
from infcore.methods.gradients import check_chunk_size, per_example_grads
from infcore.models import Params, n_params
from infcore.training import TrainedModel, per_example_loss


def hessian(
    model: nn.Module,
    params: Params,
    data: Split,
    weight_decay: float,
    *,
    chunk_size: int = 32,
) -> torch.Tensor:
    """Exact Hessian of the mean cross-entropy on ``data`` + ``weight_decay / 2 * ||theta||^2``.

    For the j-th parameter tensor (in the order of ``params``), the Hessian-vector products along
    its basis vectors are taken of the objective as a function of tensors j, j+1, ... only; they
    give the Hessian's columns of tensor j below the diagonal block, and symmetry gives the rest.
    The cost of a direction therefore shrinks the later its tensor comes in the forward pass.

    Parameters
    ----------
    model : nn.Module
        Architecture.
    params : dict of str to Tensor
        Weights at which the Hessian is taken (its dtype sets the result's).
    data : Split
        Training examples whose mean loss is differentiated.
    weight_decay : float
        Coefficient of the L2 term, >= 0 (``TrainConfig.weight_decay``: the update adds
        ``weight_decay * theta``, the gradient of ``weight_decay / 2 * ||theta||^2``).
    chunk_size : int
        Basis vectors per vectorised Hessian-vector product, >= 1; the memory grows with
        ``chunk_size * len(data)``.

    Returns
    -------
    Tensor of shape (P, P), symmetric
        Rows and columns follow the parameters flattened in the order of ``params``.
    """
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    if not math.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    check_chunk_size(chunk_size)
    names = list(params)
    fixed_all = {name: p.detach() for name, p in params.items()}
    sizes = [p.numel() for p in fixed_all.values()]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    total = int(offsets[-1])
    first = next(iter(fixed_all.values()))
    result = torch.zeros(total, total, dtype=first.dtype, device=first.device)

    for j, name in enumerate(names):
        head = {k: fixed_all[k] for k in names[j + 1 :]}
        frozen = {k: fixed_all[k] for k in names[:j]}

        def objective(tail: Params) -> torch.Tensor:
            loss = per_example_loss(model, {**frozen, **tail}, data.x, data.y).mean()
            return loss + 0.5 * weight_decay * sum((p * p).sum() for p in tail.values())

        def tail_gradient(own: torch.Tensor) -> torch.Tensor:
            grads = grad(objective)({name: own, **head})
            return torch.cat([grads[k].reshape(-1) for k in names[j:]])

        def hvp(direction: torch.Tensor) -> torch.Tensor:
            return jvp(tail_gradient, (fixed_all[name],), (direction,))[1]

        basis = torch.eye(sizes[j], dtype=first.dtype, device=first.device)
        basis = basis.reshape(sizes[j], *fixed_all[name].shape)
        columns = vmap(hvp, chunk_size=chunk_size)(basis)  # (size_j, total - offset_j)
        start, stop = int(offsets[j]), int(offsets[j + 1])
        result[start:, start:stop] = columns.T
        result[start:stop, start:] = columns
    return 0.5 * (result + result.T)


def _check_damping(damping: object) -> float:
    if isinstance(damping, bool) or not isinstance(damping, (int, float, np.floating)):
        raise ValueError(f"damping must be a finite number >= 0, got {damping!r}")
    if not math.isfinite(damping) or damping < 0:
        raise ValueError(f"damping must be a finite number >= 0, got {damping!r}")
    return float(damping)


def influence_function(
    trained: TrainedModel,
    train: Split,
    test: Split,
    *,
    damping: float = 0.01,
    hess: torch.Tensor | None = None,
) -> np.ndarray:
    """Influence functions: ``grad L(test)^T (H + damping I)^-1 grad L(train)`` at the final weights.

    ``H`` is the exact Hessian of the training objective (mean cross-entropy on ``train`` plus the
    weight-decay term), so for a convex model ``scores / n_train`` approximates leave-one-out
    retraining, ``loss_without_i(t) - loss_with_all(t)``. A trained network's Hessian is often
    indefinite; the damping must then exceed minus its smallest eigenvalue.

    Parameters
    ----------
    trained : TrainedModel
    train : Split of n_train examples
        The training set of ``trained`` (defines ``H``).
    test : Split of n_test examples
    damping : float
        Added to the Hessian's diagonal, >= 0.
    hess : Tensor of shape (P, P), optional
        ``hessian(trained.model, trained.params, train, trained.config.weight_decay)``, when already
        computed (e.g. to try several dampings).

    Returns
    -------
    scores : ndarray of shape (n_test, n_train), float64

    Raises
    ------
    ValueError
        When ``H + damping I`` is not positive definite; the message gives the smallest eigenvalue
        of ``H``, and so the smallest damping that works.
    """
    damping = _check_damping(damping)
    size = n_params(trained.params)
    if hess is not None and tuple(hess.shape) != (size, size):
        raise ValueError(f"hess must have shape ({size}, {size}), got {tuple(hess.shape)}")
    if hess is None:
        hess = hessian(trained.model, trained.params, train, trained.config.weight_decay)
    damped = hess.detach().to("cpu", torch.float64) + damping * torch.eye(size, dtype=torch.float64)
    factor, info = torch.linalg.cholesky_ex(damped)
    if info.item() != 0:
        smallest = torch.linalg.eigvalsh(hess.detach().to("cpu", torch.float64))[0].item()
        raise ValueError(
            f"H + damping*I is not positive definite with damping={damping:g}: the smallest "
            f"eigenvalue of the Hessian is {smallest:.6g}, so damping must be > {max(-smallest, 0):.6g}"
        )
    g_train = per_example_grads(trained.model, trained.params, train.x, train.y).double()
    g_test = per_example_grads(trained.model, trained.params, test.x, test.y).double()
    solved = torch.cholesky_solve(g_train.T, factor)  # (P, n_train)
    return (g_test @ solved).numpy()
