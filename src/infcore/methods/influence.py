"""Influence functions (Koh and Liang 2017) with the exact Hessian of the training objective.

The network is small enough (3,008 parameters) for the Hessian to be formed exactly and factorised,
so no iterative inverse-Hessian approximation is needed. :func:`hessian` builds it one layer at a
time from Hessian-vector products (forward-over-reverse, vectorised over basis vectors), each taken
of the objective as a function of that layer and the later ones, with the earlier layers held fixed:
directions in a late layer then need no pass through the early layers, and symmetry gives the rest.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from infcore.data import Split
from infcore.errors import HessianTooLargeError
from infcore.methods.gradients import check_chunk_size, per_example_grads
from infcore.models import Params, n_params
from infcore.training import PerExampleLoss, TrainedModel, cross_entropy, per_example_loss

#: the most parameters :func:`influence_function` forms an exact Hessian for by default: its
#: float64 copies then take about 3 * 8 * P^2 bytes, 2.4 GB at this size
MAX_EXACT_HESSIAN_PARAMS = 10_000


def _layers(names: list[str]) -> list[list[str]]:
    """Consecutive parameter names grouped by module (``conv1.weight`` and ``conv1.bias``)."""
    groups: list[list[str]] = []
    for name in names:
        module = name.rpartition(".")[0]
        if groups and groups[-1][0].rpartition(".")[0] == module:
            groups[-1].append(name)
        else:
            groups.append([name])
    return groups


def _layer_chunks(
    model: nn.Module, params: Params, data: Split, layers: list[list[str]], chunk_size: int
) -> list[int]:
    """Basis vectors per vectorised Hessian-vector product, for each layer of :func:`hessian`.

    The tangents of a direction in a layer fill the activations of that layer and the later ones,
    so a late layer's direction takes a fraction ``f`` of the memory of the first layer's (the
    outputs per example of the modules that hold parameters, from this layer's on, against those
    from the first layer's on). A layer gets ``chunk_size / sqrt(f)`` directions per chunk, at
    least ``chunk_size`` and at most its size: fewer chunks evaluate the frozen earlier layers
    fewer times and multiply larger matrices, but chunks that take the first layer's memory
    (``chunk_size / f``) were slower for a convolution. Measured for ``SmallCNN`` on 800
    examples (AMD EPYC, AVX2, one thread), seconds for all of a layer's directions: the second
    convolution 14.0 / 12.9 / 21.3 s with 16 / 32 / 85 per chunk (this rule: 37), the first
    linear layer 7.2 / 1.5 / 0.9 / 1.6 s with 16 / 128 / 512 / 2,064 (this rule: 200). A layer
    whose module is not called as such (parameters used functionally) keeps ``chunk_size``.

    Returns
    -------
    list of int, one per layer
    """
    modules = [layer[0].rpartition(".")[0] for layer in layers]
    sizes: dict[str, int] = {}
    handles = []
    for name in dict.fromkeys(modules):
        def record(_module, _inputs, output, name=name):
            if name not in sizes and isinstance(output, torch.Tensor):
                sizes[name] = output[0].numel()
        handles.append(model.get_submodule(name).register_forward_hook(record))
    try:
        with torch.no_grad():
            functional_call(model, params, (data.x[:1],))
    finally:
        for handle in handles:
            handle.remove()
    if any(name not in sizes for name in modules):
        return [chunk_size] * len(layers)
    called = list(sizes)  # in the order the forward pass reached them
    after = {name: sum(sizes[m] for m in called[called.index(name):]) for name in called}
    widest = after[modules[0]]
    return [min(sum(params[k].numel() for k in layer),
                max(chunk_size, round(chunk_size * math.sqrt(widest / after[m]))))
            for layer, m in zip(layers, modules)]


def _tail_columns(
    model: nn.Module,
    params: Params,
    data: Split,
    weight_decay: float,
    first: int,
    count: int,
    chunk_size: int,
    loss: PerExampleLoss,
) -> torch.Tensor:
    """Hessian columns of parameter tensors ``first .. first + count - 1``, rows from ``first`` on.

    The tensors before ``first`` are constants of the objective, so neither the tangents of the
    forward pass nor the backward pass reach the layers that hold them.

    Returns
    -------
    Tensor of shape (size of the ``count`` tensors, size of the tensors from ``first`` on)
        Row ``a`` is the Hessian-vector product with the ``a``-th basis vector of those tensors.
    """
    names = list(params)
    frozen = {k: params[k] for k in names[:first]}
    own_names, later = names[first : first + count], {k: params[k] for k in names[first + count :]}
    own_sizes = [params[k].numel() for k in own_names]

    def objective(tail: Params) -> torch.Tensor:
        mean = per_example_loss(model, {**frozen, **tail}, data.x, data.y, loss=loss).mean()
        return mean + 0.5 * weight_decay * sum((p * p).sum() for p in tail.values())

    def tail_gradient(own: torch.Tensor) -> torch.Tensor:
        pieces = own.split(own_sizes)
        tail = {k: v.reshape(params[k].shape) for k, v in zip(own_names, pieces)} | later
        grads = grad(objective)(tail)
        return torch.cat([grads[k].reshape(-1) for k in names[first:]])

    own = torch.cat([params[k].reshape(-1) for k in own_names])
    basis = torch.eye(own.numel(), dtype=own.dtype, device=own.device)
    return vmap(lambda v: jvp(tail_gradient, (own,), (v,))[1], chunk_size=chunk_size)(basis)


def hessian(
    model: nn.Module,
    params: Params,
    data: Split,
    weight_decay: float,
    *,
    chunk_size: int = 16,
    loss: PerExampleLoss = cross_entropy,
) -> torch.Tensor:
    """Exact Hessian of the mean loss on ``data`` + ``weight_decay / 2 * ||theta||^2``.

    For each layer (the parameter tensors of one module, in the order of ``params``), the
    Hessian-vector products along its basis vectors are taken of the objective as a function of
    that layer's and the later tensors only; they give the layer's columns from its diagonal block
    down, and symmetry gives the rest. A direction costs less the later its layer comes in the
    forward pass: for ``SmallCNN`` this is about ten times faster than Hessian-vector products over
    all parameters (``benchmarks/bench_methods.py``).

    Parameters
    ----------
    model : nn.Module
        Architecture.
    params : dict of str to Tensor
        Weights at which the Hessian is taken (its dtype and device set the result's).
    data : Split
        Training examples whose mean loss is differentiated.
    weight_decay : float
        Coefficient of the L2 term, >= 0 (``TrainConfig.weight_decay``: the update adds
        ``weight_decay * theta``, the gradient of ``weight_decay / 2 * ||theta||^2``).
    chunk_size : int
        Basis vectors per vectorised Hessian-vector product in the first layer, >= 1. A later
        layer, whose directions need memory only for the activations from that layer on, takes
        ``chunk_size`` times the square root of how much less (for ``SmallCNN``: 16, 37, 200 and
        all 32 directions of its four layers). The memory grows with ``chunk_size * len(data)``:
        for ``SmallCNN`` on 800 examples, about 0.75 GB at 16.
    loss : callable
        Per-example loss (cross-entropy by default), see :func:`infcore.training.per_example_loss`.

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
    fixed = {name: p.detach() for name, p in params.items()}
    offsets = np.cumsum([0] + [p.numel() for p in fixed.values()])
    anchor = next(iter(fixed.values()))
    result = torch.zeros(offsets[-1], offsets[-1], dtype=anchor.dtype, device=anchor.device)
    layers = _layers(list(fixed))
    first = 0
    for layer, chunk in zip(layers, _layer_chunks(model, fixed, data, layers, chunk_size)):
        columns = _tail_columns(model, fixed, data, weight_decay, first, len(layer), chunk, loss)
        start, stop = offsets[first], offsets[first + len(layer)]
        result[start:, start:stop] = columns.T
        result[start:stop, start:] = columns
        first += len(layer)
    # Each diagonal block was written as its transpose; averaging makes it exactly symmetric.
    return 0.5 * (result + result.T)


#: what ``damping="auto"`` adds to minus the smallest eigenvalue of the Hessian
AUTO_DAMPING_MARGIN = 0.01


def _check_damping(damping: object) -> float | str:
    if damping == "auto":
        return "auto"
    if isinstance(damping, bool) or not isinstance(damping, (int, float, np.floating)):
        raise ValueError(f"damping must be a finite number >= 0 or 'auto', got {damping!r}")
    if not math.isfinite(damping) or damping < 0:
        raise ValueError(f"damping must be a finite number >= 0 or 'auto', got {damping!r}")
    return float(damping)


def smallest_working_damping(hess: torch.Tensor, margin: float = AUTO_DAMPING_MARGIN) -> float:
    """``max(0, -lambda_min(H)) + margin``: the damping that ``damping="auto"`` uses.

    Parameters
    ----------
    hess : Tensor of shape (P, P)
        A symmetric Hessian.
    margin : float
        How far above the smallest eigenvalue to stay, > 0.
    """
    smallest = torch.linalg.eigvalsh(hess.detach().to("cpu", torch.float64))[0].item()
    return max(0.0, -smallest) + margin


def influence_function(
    trained: TrainedModel,
    train: Split,
    test: Split,
    *,
    damping: float | str = 0.01,
    hess: torch.Tensor | None = None,
    max_params: int = MAX_EXACT_HESSIAN_PARAMS,
) -> np.ndarray:
    """Influence functions: ``grad L(test)^T (H + damping I)^-1 grad L(train)``, final weights.

    ``H`` is the exact Hessian of the training objective (mean ``trained.loss`` on ``train`` plus the
    weight-decay term ``trained.weight_decay``), so for a convex model ``scores / n_train`` approximates leave-one-out
    retraining, ``loss_without_i(t) - loss_with_all(t)``. A trained network's Hessian is often
    indefinite; the damping must then exceed minus its smallest eigenvalue.

    Parameters
    ----------
    trained : TrainedModel
    train : Split of n_train examples
        The training set of ``trained`` (defines ``H``).
    test : Split of n_test examples
    damping : float or "auto"
        Added to the Hessian's diagonal, >= 0; ``"auto"`` takes
        :func:`smallest_working_damping` of this model's Hessian (minus its smallest eigenvalue plus
        :data:`AUTO_DAMPING_MARGIN`), so the same setting works for every model of a sweep.
    hess : Tensor of shape (P, P), optional
        ``hessian(trained.model, trained.params, train, trained.weight_decay, loss=trained.loss)``,
        when already computed (e.g. to try several dampings).
    max_params : int
        Largest parameter count P for which the exact Hessian is formed (see
        :data:`MAX_EXACT_HESSIAN_PARAMS`); raise it knowingly, the memory grows as P^2.

    Returns
    -------
    scores : ndarray of shape (n_test, n_train), float64

    Raises
    ------
    ValueError
        When ``H + damping I`` is not positive definite; the message gives the smallest eigenvalue
        of ``H``, and so the smallest damping that works.
    HessianTooLargeError
        When the model has more than ``max_params`` parameters; the message gives the memory the
        Hessian would take.
    """
    damping = _check_damping(damping)
    size = n_params(trained.params)
    if size > max_params:
        raise HessianTooLargeError(
            f"influence_function forms the exact Hessian, which is limited to max_params="
            f"{max_params:,} parameters; this model has {size:,}, so its Hessian would take about "
            f"{3 * 8 * size**2 / 1e9:.1f} GB (three float64 copies of {size:,} x {size:,}). Score "
            "a smaller model or only its head, or pass a larger max_params"
        )
    if hess is not None and tuple(hess.shape) != (size, size):
        raise ValueError(f"hess must have shape ({size}, {size}), got {tuple(hess.shape)}")
    if hess is None:
        hess = hessian(trained.model, trained.params, train, trained.weight_decay,
                       loss=trained.loss)
    if damping == "auto":
        damping = smallest_working_damping(hess)
    damped = hess.detach().to("cpu", torch.float64) + damping * torch.eye(size, dtype=torch.float64)
    factor, info = torch.linalg.cholesky_ex(damped)
    if info.item() != 0:
        smallest = torch.linalg.eigvalsh(hess.detach().to("cpu", torch.float64))[0].item()
        raise ValueError(
            f"H + damping*I is not positive definite with damping={damping:g}: the smallest "
            f"eigenvalue of the Hessian is {smallest:.6g}, so damping must be > "
            f"{max(-smallest, 0):.6g}"
        )
    g_train = per_example_grads(trained.model, trained.params, train.x, train.y,
                                loss=trained.loss).double()
    g_test = per_example_grads(trained.model, trained.params, test.x, test.y,
                               loss=trained.loss).double()
    solved = torch.cholesky_solve(g_train.T, factor)  # (P, n_train)
    return (g_test @ solved).numpy()


def gauss_newton(
    model: nn.Module,
    params: Params,
    data: Split,
    weight_decay: float,
    *,
    chunk_size: int = 100,
) -> torch.Tensor:
    """Gauss-Newton matrix of the mean cross-entropy on ``data`` + ``weight_decay * I``.

    ``G = mean_j J_j^T H_j J_j + weight_decay * I``, where ``J_j`` is the Jacobian of the logits of
    example ``j`` with respect to the parameters and ``H_j = diag(p_j) - p_j p_j^T`` the Hessian of
    the cross-entropy with respect to those logits (``p_j`` the softmax). It is the Hessian without
    the terms of the network's own curvature, so it is positive semi-definite (positive definite
    with weight decay), the curvature that Bae et al. (2022) use.

    Parameters
    ----------
    model : nn.Module
    params : dict of str to Tensor
        Weights at which it is taken (their dtype and device set the result's).
    data : Split of n examples
    weight_decay : float
        Coefficient of the L2 term, >= 0.
    chunk_size : int
        Examples whose Jacobians are formed at once, >= 1.

    Returns
    -------
    Tensor of shape (P, P), symmetric, rows and columns in the order of ``params``
    """
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not (
            math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    check_chunk_size(chunk_size)
    fixed = {name: p.detach() for name, p in params.items()}
    names = list(fixed)

    def logits_of(flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        pieces = flat.split([fixed[k].numel() for k in names])
        weights = {k: v.reshape(fixed[k].shape) for k, v in zip(names, pieces)}
        return torch.func.functional_call(model, weights, (x.unsqueeze(0),))[0]

    flat = torch.cat([fixed[k].reshape(-1) for k in names])
    result = torch.zeros(flat.numel(), flat.numel(), dtype=flat.dtype, device=flat.device)
    for start in range(0, len(data), chunk_size):
        x = data.x[start : start + chunk_size].to(flat.dtype)
        jac = vmap(torch.func.jacrev(logits_of), in_dims=(None, 0))(flat, x)  # (b, C, P)
        with torch.no_grad():
            p = torch.func.functional_call(model, fixed, (x,)).softmax(dim=1)
            out = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)  # (b, C, C)
            result += jac.flatten(0, 1).T @ (out @ jac).flatten(0, 1)
    result = result / len(data) + weight_decay * torch.eye(len(flat), dtype=flat.dtype,
                                                          device=flat.device)
    return 0.5 * (result + result.T)
