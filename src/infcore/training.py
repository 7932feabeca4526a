"""Deterministic SGD training of the small CNN: one model at a time, or many at once.

``train`` is the single reference loop. ``train_many`` trains K models together on stacked
parameters (the small CNN as grouped convolutions, one group per model; any other architecture with
``torch.func.vmap`` over ``functional_call``) and takes exactly the steps that ``train`` takes for
every model, which is what leave-one-out retraining and ensembles of models need.
Initialisation and data order have separate seeds, so either source of randomness can be varied
alone.

Both refuse data the model cannot take (:func:`check_fits`) and stop with a
:class:`TrainingError` that names the config when a run diverges (nan or inf loss or weights) or
dies (the gradient at the final weights exactly zero, as when a too-large learning rate switches
off every ReLU): such a model would give degenerate scores without any other sign. A trained model
records the size and :func:`~infcore.data.fingerprint` of its training split.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import nn
from torch.func import functional_call, vmap
from tqdm import tqdm

from infcore.data import Split, check_split, fingerprint
from infcore.errors import NotPerExampleLossError
from infcore.models import Params, SmallCNN, init_params
from infcore.parallel import check_backend, run_chunks

StepCallback = Callable[[int, torch.Tensor, Params, Params], None]
#: ``loss(outputs, y) -> Tensor of shape (n,)``: one loss value per example, no reduction
PerExampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each example: the loss of every model that infcore trains.

    Parameters
    ----------
    logits : Tensor of shape (n, n_classes)
    y : Tensor of shape (n,), int64

    Returns
    -------
    Tensor of shape (n,)
    """
    return F.cross_entropy(logits, y, reduction="none")


class TrainingError(ValueError):
    """Training diverged (nan or inf loss or weights) or died (no gradient in the last epoch)."""


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_float(name: str, value: object, *, positive: bool) -> None:
    allowed = "a finite number > 0" if positive else "a finite number >= 0"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters and seeds of one SGD run (constant learning rate, L2 weight decay).

    Attributes
    ----------
    epochs : int
        Number of passes over the training set, >= 1.
    lr : float
        Learning rate, > 0, the same in every epoch.
    batch_size : int
        Examples per update, >= 1; the last batch of an epoch may be smaller.
    weight_decay : float
        Coefficient ``lambda`` >= 0 of the gradient term ``lambda * W`` added at every update.
    init_seed : int
        Seed of the initial weights, >= 0.
    order_seed : int
        Seed of the order in which examples are visited, >= 0.
    """

    epochs: int = 5
    lr: float = 0.1
    batch_size: int = 32
    weight_decay: float = 1e-3
    init_seed: int = 0
    order_seed: int = 0

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, 1)
        _check_float("lr", self.lr, positive=True)
        _check_int("batch_size", self.batch_size, 1)
        _check_float("weight_decay", self.weight_decay, positive=False)
        _check_int("init_seed", self.init_seed, 0)
        _check_int("order_seed", self.order_seed, 0)


@dataclass
class TrainedModel:
    """A trained network: its architecture, final weights, checkpoints and training objective.

    :func:`train` and :func:`train_many` make one; :func:`infcore.own_model.from_model` wraps a
    network trained by any other code (then ``config`` is None).

    Attributes
    ----------
    model : nn.Module
        Architecture only; the weights are applied with ``torch.func.functional_call``.
    params : dict of str to Tensor
        Final weights (float32, detached, on the CPU).
    checkpoints : list of dict of str to Tensor
        Weights at the end of each epoch (``checkpoints[-1]`` equals ``params``), or at the points
        where a user's training saved them; may be empty for a wrapped model.
    lrs : list of float
        Learning rate used during each epoch, ``len(lrs) == len(checkpoints)``.
    config : TrainConfig or None
        The configuration that produced the model; None for a model trained by other code, which
        infcore cannot replay (leave-one-out then needs a ``retrain`` function).
    excluded : int or None
        Index of the training example left out, if any.
    n_train : int or None
        Size of the training split (None: not recorded, as for a model built by hand).
    train_fingerprint : str or None
        :func:`infcore.data.fingerprint` of the training split; scoring the model against another
        split is refused.
    loss : callable
        Per-example loss ``loss(outputs, y) -> (n,)`` whose gradients the methods take;
        :func:`cross_entropy` by default.
    weight_decay : float or None
        Coefficient ``lambda`` of the ``lambda / 2 * ||theta||^2`` term of the training objective
        (its Hessian, the representer penalty); None takes ``config.weight_decay``, or 0 without a
        config.
    kept : bool Tensor of shape (n_train,) or None
        The training subset the model was trained on (:func:`train_many` with ``keep``); None
        when it saw every example (but ``excluded``).
    """

    model: nn.Module
    params: Params
    checkpoints: list[Params]
    lrs: list[float]
    config: TrainConfig | None
    excluded: int | None = None
    n_train: int | None = None
    train_fingerprint: str | None = None
    loss: PerExampleLoss = cross_entropy
    weight_decay: float | None = None
    kept: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.weight_decay is None:
            self.weight_decay = 0.0 if self.config is None else float(self.config.weight_decay)
        elif self.config is not None and self.weight_decay != self.config.weight_decay:
            raise ValueError(
                f"weight_decay={self.weight_decay!r} differs from config.weight_decay="
                f"{self.config.weight_decay!r}; give one of them"
            )


def per_example_loss(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: PerExampleLoss = cross_entropy,
) -> torch.Tensor:
    """Loss of each example under ``params`` (no weight-decay term); cross-entropy by default.

    Parameters
    ----------
    model : nn.Module
        Architecture.
    params : dict of str to Tensor
        Weights to use instead of the module's own.
    x : Tensor of shape (n, ...)
    y : Tensor of shape (n, ...)
    loss : callable
        ``loss(model outputs, y)``, which must return a tensor of shape (n,).

    Returns
    -------
    Tensor of shape (n,)

    Raises
    ------
    NotPerExampleLossError
        When ``loss`` returns another shape (a mean- or sum-reduced loss, for example).
    """
    values = loss(functional_call(model, params, (x,)), y)
    if values.shape != (len(y),):
        raise NotPerExampleLossError(
            f"the loss must return one value per example, shape ({len(y)},), but returned shape "
            f"{tuple(values.shape)}: use a loss without reduction, e.g. "
            "nn.CrossEntropyLoss(reduction='none')"
        )
    return values


def epoch_order(
    n: int, order_seed: int, epoch: int, exclude: int | None = None,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """The order in which the training examples are visited in ``epoch``.

    A permutation of ``range(n)`` drawn from a generator seeded by ``(order_seed, epoch)`` alone, so
    it does not depend on the initialisation, the device or what ran before. With ``exclude=i`` it
    is the same permutation with ``i`` deleted; with ``keep`` (a bool mask of shape (n,), a
    training subset) the same permutation restricted to the kept examples.

    Returns
    -------
    Tensor of shape (n,), (n - 1,) or (keep.sum(),), int64, on the CPU
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(order_seed, epoch)))
    if keep is not None:
        order = order[keep[order]]
    return order if exclude is None else order[order != exclude]


def _check_keep(keep: Sequence[ArrayLike | None] | None, k: int, n: int) -> list[torch.Tensor | None]:
    """Each model's training subset as a bool tensor of shape (n,), or None (all examples)."""
    if keep is None:
        return [None] * k
    keep = list(keep)
    if len(keep) != k:
        raise ValueError(f"keep must hold one entry per config ({k}), got {len(keep)}")
    masks: list[torch.Tensor | None] = []
    for m, mask in enumerate(keep):
        if mask is None:
            masks.append(None)
            continue
        mask = torch.as_tensor(np.asarray(mask))
        if mask.dtype != torch.bool or tuple(mask.shape) != (n,):
            raise ValueError(f"keep[{m}] must be a bool mask of shape ({n},), got dtype "
                             f"{mask.dtype} and shape {tuple(mask.shape)}")
        if not mask.any():
            raise ValueError(f"keep[{m}] keeps no training example")
        masks.append(mask)
    return masks


def epoch_seed(order_seed: int, epoch: int) -> int:
    """The seed of the generator that draws epoch ``epoch``'s order (see :func:`epoch_order`)."""
    return int(np.random.SeedSequence([order_seed, epoch]).generate_state(1)[0])


#: how a leave-one-out retraining orders the remaining examples (:func:`retraining_order`)
ORDER_VARIANTS = ("kept", "redrawn", "fresh")


def check_order_variant(order_variant: object) -> str:
    """``order_variant`` if it is one of :data:`ORDER_VARIANTS`, else a ValueError naming them."""
    if order_variant not in ORDER_VARIANTS:
        raise ValueError(f"order_variant must be one of {list(ORDER_VARIANTS)}; got {order_variant!r}")
    return order_variant


def retraining_order(
    n: int, order_seed: int, epoch: int, exclude: int | None = None, order_variant: str = "kept"
) -> torch.Tensor:
    """The order of epoch ``epoch`` of a run that leaves out ``exclude``, under an order variant.

    ``"kept"`` is :func:`epoch_order`: the full run's permutation with ``exclude`` deleted, so the
    remaining examples keep their relative order (the book's leave-one-out). ``"redrawn"`` is what
    ``DataLoader(Subset(data, remaining), shuffle=True, generator=g)`` draws when ``g`` is seeded
    with the full run's seed of that epoch (:func:`epoch_seed`): a permutation of the ``n - 1``
    positions, unrelated to the full run's order. ``"fresh"`` draws a permutation of the remaining
    examples from a seed of its own for every left-out example. Without ``exclude`` all three are
    :func:`epoch_order`, so the model trained on all examples is the same.

    Returns
    -------
    Tensor of shape (n,) or (n - 1,), int64, on the CPU
    """
    check_order_variant(order_variant)
    if exclude is None or order_variant == "kept":
        return epoch_order(n, order_seed, epoch, exclude)
    remaining = torch.cat([torch.arange(exclude), torch.arange(exclude + 1, n)])
    if order_variant == "fresh":
        seed = int(np.random.SeedSequence([order_seed, epoch, exclude, 1]).generate_state(1)[0])
        return remaining[torch.randperm(n - 1, generator=torch.Generator().manual_seed(seed))]
    generator = torch.Generator().manual_seed(epoch_seed(order_seed, epoch))
    # a DataLoader's iterator first draws the base seed of its workers from the generator
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    return remaining[torch.randperm(n - 1, generator=generator)]


def _check_exclude(exclude: object, n: int) -> None:
    if exclude is None:
        return
    is_index = isinstance(exclude, (int, np.integer)) and not isinstance(exclude, bool)
    if not is_index or not 0 <= exclude < n:
        raise ValueError(f"exclude must be None or an integer in [0, {n - 1}], got {exclude!r}")
    if n < 2:
        raise ValueError("exclude needs at least 2 training examples, so that one remains")


def check_fits(model: nn.Module, params: Params, split: Split, name: str) -> None:
    """Refuse a split that is not finite, or whose inputs or labels the model cannot take.

    The checks of :func:`infcore.data.check_split`, then the logits of the first example: a
    shape the model cannot take, or a label without a logit, is reported here rather than as an
    error from deep inside torch.

    Parameters
    ----------
    model : nn.Module
    params : dict of str to Tensor
        Weights of ``model``, on the device of ``split``.
    split : Split of n examples
    name : str
        What the split is (``"train"``, ``"test"``), for the message.

    Raises
    ------
    ValueError
        Naming the split, its shape and what the model expects.
    """
    check_split(split, name)
    try:
        with torch.no_grad():
            logits = functional_call(model, params, (split.x[:1],))
    except (RuntimeError, ValueError, IndexError) as error:
        raise ValueError(
            f"{name} split: inputs of shape {tuple(split.x.shape)} do not fit "
            f"{type(model).__name__}: {error}"
        ) from None
    if logits.dim() != 2 or len(logits) != 1:
        raise ValueError(
            f"{name} split: {type(model).__name__} gives logits of shape {tuple(logits.shape)} for "
            f"one input of shape {tuple(split.x.shape[1:])}, not (1, n_classes)"
        )
    too_large = split.y >= logits.shape[1]
    if too_large.any():
        i = int(torch.nonzero(too_large)[0, 0])
        raise ValueError(
            f"{name} split: y[{i}] = {split.y[i].item()} is not a class of "
            f"{type(model).__name__}, which has {logits.shape[1]} logits"
        )


def _describe(config: TrainConfig, exclude: int | None) -> str:
    return f"{config}" + ("" if exclude is None else f" leaving out example {exclude}")


def _diverged(loss: torch.Tensor, params: Params) -> str | None:
    """What went wrong in an epoch (summed batch loss ``loss``, final ``params``), if anything."""
    if not torch.isfinite(loss):
        return "the loss became nan or inf"
    if not all(torch.isfinite(p).all() for p in params.values()):
        return "the weights became nan or inf"
    return None


_LOWER_LR = "lower lr (or check the data), since the scores of such a model mean nothing"
#: Training examples on which the final gradient is checked: a network that died (the loss does
#: not depend on any weight) has a zero gradient on all of them, a working one on none.
_PROBE = 64
_DIED = (f"the gradient of the loss on the first {_PROBE} training examples at the final weights "
         "is exactly zero: the network died (no ReLU active)")


def _default_model() -> SmallCNN:
    # Building a module draws its initial weights from the global generator; those are unused
    # (init_params draws from init_seed), but the caller's random state must stay as it was.
    with torch.random.fork_rng(devices=[]):
        return SmallCNN()


def _to_cpu(params: Params) -> Params:
    return {name: p.detach().to("cpu", copy=True) for name, p in params.items()}


def train(
    config: TrainConfig,
    data: Split,
    *,
    model: nn.Module | None = None,
    exclude: int | None = None,
    on_step: StepCallback | None = None,
    device: str | torch.device = "cpu",
    order_variant: str = "kept",
) -> TrainedModel:
    """Train one model with minibatch SGD; the reference loop that every other path must match.

    The weights start from ``init_params(model, config.init_seed)``. Epoch ``e`` visits
    ``epoch_order(n, config.order_seed, e, exclude)`` in consecutive batches of
    ``config.batch_size`` (the last one smaller), and each batch applies
    ``W <- W - lr * (grad of the mean batch loss + weight_decay * W)``.

    Parameters
    ----------
    config : TrainConfig
    data : Split
        Training set of n examples.
    model : nn.Module, optional
        Architecture; ``SmallCNN()`` when None.
    exclude : int, optional
        Index of a training example to leave out (leave-one-out retraining): same initialisation and
        same order of the remaining examples.
    on_step : callable, optional
        Called after every update as ``on_step(step, batch_index, params_before, params_after)``,
        where ``step`` counts updates from 0 over all epochs, ``batch_index`` (int64, CPU) holds the
        indices into ``data`` of the batch, and the two dicts are the weights (on ``device``) before
        and after the update; they are fresh tensors that training does not change afterwards.
    device : str or torch.device
        Where to compute; the returned weights are on the CPU.
    order_variant : {"kept", "redrawn", "fresh"}
        How a run with ``exclude`` orders the remaining examples (:func:`retraining_order`).

    Returns
    -------
    TrainedModel

    Raises
    ------
    ValueError
        If ``data`` is empty, not finite, or does not fit ``model`` (see :func:`check_fits`).
    TrainingError
        If the run diverges (it stops at the end of that epoch) or dies (the gradient at the final
        weights is exactly zero on the first training examples), naming ``config``.
    """
    check_order_variant(order_variant)
    model = _default_model() if model is None else model
    params = {name: p.to(device) for name, p in init_params(model, config.init_seed).items()}
    x, y = data.x.to(device), data.y.to(device)
    check_fits(model, params, Split(x, y), "training")
    _check_exclude(exclude, len(data))
    checkpoints: list[Params] = []
    step = 0
    for epoch in range(config.epochs):
        order = retraining_order(len(data), config.order_seed, epoch, exclude, order_variant)
        epoch_loss = torch.zeros((), device=device)
        for batch_index in order.split(config.batch_size):
            batch = batch_index.to(device)
            leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
            loss = per_example_loss(model, leaves, x[batch], y[batch]).mean()
            grads = torch.autograd.grad(loss, list(leaves.values()))
            epoch_loss += loss.detach()
            with torch.no_grad():
                new_params = {
                    name: p - config.lr * (g + config.weight_decay * p)
                    for (name, p), g in zip(params.items(), grads)
                }
            if on_step is not None:
                on_step(step, batch_index, params, new_params)
            params = new_params
            step += 1
        checkpoints.append(_to_cpu(params))
        problem = _diverged(epoch_loss, checkpoints[-1])
        if problem is not None:
            raise TrainingError(f"training {_describe(config, exclude)} diverged: {problem} in "
                                f"epoch {epoch + 1} of {config.epochs}; {_LOWER_LR}")
    leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
    probe = per_example_loss(model, leaves, x[:_PROBE], y[:_PROBE]).sum()
    if sum(g.abs().sum() for g in torch.autograd.grad(probe, list(leaves.values()))) == 0:
        raise TrainingError(f"training {_describe(config, exclude)} failed: {_DIED}; {_LOWER_LR}")
    return TrainedModel(
        model=model,
        params=checkpoints[-1],
        checkpoints=checkpoints,
        lrs=[float(config.lr)] * config.epochs,
        config=config,
        excluded=exclude,
        n_train=len(data),
        train_fingerprint=fingerprint(data),
    )


def _shared_hyperparameters(configs: Sequence[TrainConfig]) -> None:
    if len(configs) == 0:
        raise ValueError("configs must hold at least one TrainConfig")
    for field in ("epochs", "lr", "batch_size", "weight_decay"):
        values = {getattr(c, field) for c in configs}
        if len(values) > 1:
            raise ValueError(
                f"all configs must share {field} (only init_seed and order_seed may differ), "
                f"got {sorted(values)}"
            )


def _epoch_batches(
    orders: list[torch.Tensor], batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-model batches of one epoch, padded to a common number of steps.

    Parameters
    ----------
    orders : list of K int64 tensors, of lengths n or n - 1
        Visiting order of each model.
    batch_size : int

    Returns
    -------
    index : Tensor of shape (steps, K, batch_size), int64
        Example indices; padding slots point at example 0.
    weight : Tensor of shape (steps, K, batch_size), float32
        ``1 / (examples of the model in the batch)`` for real slots, 0 for padding, so that the
        weighted sum of losses is each model's mean batch loss.
    active : Tensor of shape (steps, K), bool
        Whether the model has any example at that step (if not, it takes no update).
    """
    steps = max(math.ceil(len(o) / batch_size) for o in orders)
    width = steps * batch_size
    index = torch.zeros(len(orders), width, dtype=torch.long)
    valid = torch.zeros(len(orders), width, dtype=torch.bool)
    for k, order in enumerate(orders):
        index[k, : len(order)] = order
        valid[k, : len(order)] = True
    index = index.view(len(orders), steps, batch_size).transpose(0, 1)
    valid = valid.view(len(orders), steps, batch_size).transpose(0, 1)
    counts = valid.sum(dim=2)
    weight = valid.float() / counts.clamp(min=1).unsqueeze(2).float()
    return index, weight, counts > 0


def _small_cnn_stacked_logits(params: Params, xb: torch.Tensor) -> torch.Tensor:
    """``SmallCNN.forward`` for K stacked models at once, as grouped convolutions.

    Model k's channels form group k of each convolution; the channels-last layout makes the grouped
    convolutions about twice as fast as one model at a time on a CPU.

    Parameters
    ----------
    params : dict of str to Tensor
        Stacked weights, each of shape (K, ...).
    xb : Tensor of shape (B, K, 1, 28, 28)
        Column k is model k's batch.

    Returns
    -------
    Tensor of shape (K, B, n_classes)
    """
    batch, k = xb.shape[:2]
    h = xb.reshape(batch, k, *xb.shape[3:]).contiguous(memory_format=torch.channels_last)
    weight = params["conv1.weight"]
    weight = weight.reshape(-1, *weight.shape[2:]).contiguous(memory_format=torch.channels_last)
    h = F.conv2d(h, weight, params["conv1.bias"].reshape(-1), groups=k)
    return _small_cnn_stacked_tail(params, F.relu(F.max_pool2d(h, 2)))


def _small_cnn_stacked_tail(params: Params, h: torch.Tensor) -> torch.Tensor:
    """The layers after the first convolution block of :func:`_small_cnn_stacked_logits`.

    Parameters
    ----------
    params : dict of str to Tensor
        Stacked weights, each of shape (K, ...).
    h : Tensor of shape (B, K * 4, 12, 12)
        The first block's output (pooled, ReLU), model k's channels in group k.

    Returns
    -------
    Tensor of shape (K, B, n_classes)
    """
    batch, k = h.shape[0], len(params["conv2.weight"])
    weight = params["conv2.weight"]
    weight = weight.reshape(-1, *weight.shape[2:]).contiguous(memory_format=torch.channels_last)
    h = F.conv2d(h, weight, params["conv2.bias"].reshape(-1), groups=k)
    h = F.relu(F.max_pool2d(h, 2))  # as SmallCNN.features: pooling first, same values
    h = h.reshape(batch, k, -1).transpose(0, 1)
    h = torch.baddbmm(params["fc1.bias"].unsqueeze(1), h, params["fc1.weight"].transpose(1, 2))
    h = F.relu(h)
    return torch.bmm(h, params["fc2.weight"].transpose(1, 2))


def _small_cnn_shared_batch_logits(
    params: Params, x: torch.Tensor, index: torch.Tensor
) -> torch.Tensor | None:
    """:func:`_small_cnn_stacked_logits` where models share batches, or None where few do.

    The retrainings of a leave-one-out chunk see the same images at almost every step (a
    window of the full run's order, shifted by one where the left-out example came earlier).
    The models that share a batch get their first convolution as one matrix product of the
    batch's 5 x 5 patches with all their filters, instead of a grouped convolution with one
    input channel per model (``benchmarks/bench_loo.py`` measures the gain: its models share
    batches, those of ``bench_training.py`` do not).

    Parameters
    ----------
    params : dict of str to Tensor
        Stacked weights, each of shape (K, ...).
    x : Tensor of shape (n, 1, side, side)
    index : Tensor of shape (B, K), int64
        Column k indexes model k's batch in ``x``.

    Returns
    -------
    Tensor of shape (K, B, n_classes), or None when there are more than K / 2 distinct batches
    """
    batches, group = torch.unique(index.T, dim=0, return_inverse=True)
    if 2 * len(batches) > index.shape[1]:
        return None
    order = torch.argsort(group, stable=True)  # the models of each batch next to each other
    params = {name: p[order] for name, p in params.items()}
    filters = params["conv1.weight"].flatten(2)  # (K, 4, 25)
    side = x.shape[-1] - 4
    parts, start = [], 0
    for images, count in zip(batches, torch.bincount(group, minlength=len(batches)).tolist()):
        patches = F.unfold(x[images], 5).transpose(1, 2).contiguous().view(-1, filters.shape[2])
        # (B * side * side, count * 4): the channels of `count` models at every position
        parts.append(patches @ filters[start:start + count].flatten(0, 1).T)
        start += count
    h = torch.cat([part.view(len(index), side * side, -1) for part in parts], dim=2)
    h = h.view(len(index), side, side, -1).permute(0, 3, 1, 2)  # channels last
    # a bias per channel commutes with the maximum: the same values as adding it before pooling
    h = F.relu(F.max_pool2d(h, 2) + params["conv1.bias"].reshape(1, -1, 1, 1))
    return _small_cnn_stacked_tail(params, h)[torch.argsort(order)]


def stacked_logits(model: nn.Module, params: Params, xb: torch.Tensor) -> torch.Tensor:
    """Logits of K stacked models, each on its own batch.

    Parameters
    ----------
    model : nn.Module
        Architecture shared by the K models.
    params : dict of str to Tensor
        Stacked weights, each of shape (K, ...).
    xb : Tensor of shape (B, K, ...)
        Column k is model k's batch.

    Returns
    -------
    Tensor of shape (K, B, n_classes)
    """
    if type(model) is SmallCNN:
        return _small_cnn_stacked_logits(params, xb)
    return vmap(lambda p, xk: functional_call(model, p, (xk,)), in_dims=(0, 1))(params, xb)


def _stacked_step(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    batch: torch.Tensor,
    w: torch.Tensor,
    on: torch.Tensor,
    lr: float,
    weight_decay: float,
) -> tuple[Params, torch.Tensor]:
    """One SGD update of K stacked models, each on its own batch (one step of :func:`_epoch_batches`).

    Returns
    -------
    params : dict of str to Tensor
        The updated stacked weights (a model with ``on[k]`` False keeps its weights).
    batch_loss : Tensor of shape (K,)
        Each model's mean batch loss before the update.
    """
    k_models = len(on)
    leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
    logits = None
    if type(model) is SmallCNN:
        logits = _small_cnn_shared_batch_logits(leaves, x, batch.T)
    if logits is None:
        logits = stacked_logits(model, leaves, x[batch.T])
    losses = F.cross_entropy(logits.flatten(0, 1), y[batch].flatten(), reduction="none")
    weighted = losses * w.flatten()
    # Models are independent, so the gradient of the sum of their mean batch losses with
    # respect to the stacked weights holds each model's own gradient.
    grads = torch.autograd.grad(weighted.sum(), list(leaves.values()))
    with torch.no_grad():
        updated = {}
        for (name, p), g in zip(params.items(), grads):
            mask = on.view(-1, *([1] * (p.dim() - 1)))
            updated[name] = torch.where(mask, p - lr * (g + weight_decay * p), p)
    return updated, weighted.detach().view(k_models, -1).sum(dim=1)


def first_epoch_states(
    config: TrainConfig, data: Split, last: int, *, model: nn.Module | None = None,
    device: str | torch.device = "cpu",
) -> list[Params]:
    """The weights of ``config``'s run on all of ``data`` before each of its first updates.

    The run is the one :func:`train_many` takes for a model alone (the stacked arithmetic), so that
    a model of :func:`train_many` started from entry ``s`` (its ``starts``) continues it. In a
    chunk whose models share batches, the first convolution is summed in another order (one
    matrix product per shared batch), so the continuation then differs from the model's own run
    by float32 rounding.

    Parameters
    ----------
    config : TrainConfig
    data : Split of n examples
    last : int
        The last update kept, in ``[0, ceil(n / batch_size) - 1]`` (the first epoch).
    model : nn.Module, optional
        Architecture; ``SmallCNN()`` when None.
    device : str or torch.device

    Returns
    -------
    list of ``last + 1`` dicts of str to Tensor (on the CPU): entry ``s`` holds the weights before
    update ``s``
    """
    model = _default_model() if model is None else model
    steps = math.ceil(len(data) / config.batch_size)
    if isinstance(last, bool) or not isinstance(last, int) or not 0 <= last < steps:
        raise ValueError(f"last must be an integer in [0, {steps - 1}], got {last!r}")
    x, y = data.x.to(device), data.y.to(device)
    params = {name: p.unsqueeze(0).to(device)
              for name, p in init_params(model, config.init_seed).items()}
    index, weight, active = _epoch_batches([epoch_order(len(data), config.order_seed, 0)],
                                           config.batch_size)
    states = []
    for batch, w, on in zip(index[: last + 1], weight, active):
        states.append({name: p[0].detach().to("cpu", copy=True) for name, p in params.items()})
        params, _ = _stacked_step(model, params, x, y, batch.to(device), w.to(device),
                                  on.to(device), config.lr, config.weight_decay)
    return states


def _train_chunk(
    configs: Sequence[TrainConfig],
    excluded: Sequence[int | None],
    x: torch.Tensor,
    y: torch.Tensor,
    model: nn.Module,
    device: str | torch.device,
    subsets: Sequence[torch.Tensor | None] | None = None,
    starts: Sequence[tuple[int, Params] | None] | None = None,
    order_variant: str = "kept",
) -> list[list[Params]]:
    """Train the models of one chunk together; one independent job of :func:`train_many`.

    Parameters
    ----------
    configs : sequence of K TrainConfig
        Sharing epochs, lr, batch size and weight decay.
    excluded : sequence of K (int or None)
    x : Tensor of shape (n, ...), on any device
    y : Tensor of shape (n,), int64
    model : nn.Module
    device : str or torch.device
        Where to compute.
    subsets : sequence of K (bool Tensor of shape (n,) or None), optional
        The training subset of each model (None: all examples).
    starts : sequence of K ((int, Params) or None), optional
        See :func:`train_many`; the chunk skips the updates of its first epoch that no model takes.
    order_variant : str
        See :func:`retraining_order`.

    Returns
    -------
    list of K pairs (checkpoints, problem)
        Each model's per-epoch checkpoints (weights on the CPU), and what went wrong in its
        training (None when nothing did; see :func:`train`).
    """
    x, y = x.to(device), y.to(device)
    k_models, epochs = len(configs), configs[0].epochs
    lr, weight_decay = configs[0].lr, configs[0].weight_decay
    starts = [None] * k_models if starts is None else list(starts)
    first_step = torch.tensor([0 if start is None else start[0] for start in starts])
    inits = [init_params(model, c.init_seed) if start is None else start[1]
             for c, start in zip(configs, starts)]
    params = {name: torch.stack([p[name] for p in inits]).to(device) for name in inits[0]}
    checkpoints: list[list[Params]] = [[] for _ in configs]
    problems: list[str | None] = [None] * k_models
    for epoch in range(epochs):
        orders = [epoch_order(len(y), c.order_seed, epoch, i, keep) if keep is not None
                  else retraining_order(len(y), c.order_seed, epoch, i, order_variant)
                  for c, i, keep in zip(configs, excluded, subsets or [None] * k_models)]
        index, weight, active = _epoch_batches(orders, configs[0].batch_size)
        index, weight, active = index.to(device), weight.to(device), active.to(device)
        epoch_loss = torch.zeros(k_models, device=device)
        if epoch == 0:  # a model that starts later takes no update before its first step
            steps = torch.arange(len(active)).unsqueeze(1)
            active = active & (steps >= first_step.to(device)).to(device)
            skip = int(first_step.min())
            index, weight, active = index[skip:], weight[skip:], active[skip:]
        for batch, w, on in zip(index, weight, active):
            params, batch_loss = _stacked_step(model, params, x, y, batch, w, on, lr, weight_decay)
            epoch_loss += batch_loss
        for k, kept in enumerate(checkpoints):
            kept.append({name: p[k].detach().to("cpu", copy=True) for name, p in params.items()})
            problem = _diverged(epoch_loss[k], kept[-1])
            if problems[k] is None and problem is not None:
                problems[k] = f"diverged: {problem} in epoch {epoch + 1} of {epochs}"
    leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
    probe_x = x[:_PROBE].unsqueeze(1).expand(-1, k_models, *x.shape[1:])
    logits = stacked_logits(model, leaves, probe_x)
    probe = F.cross_entropy(logits.flatten(0, 1), y[:_PROBE].repeat(k_models), reduction="sum")
    grads = torch.autograd.grad(probe, list(leaves.values()))
    gradient_size = sum(g.abs().flatten(1).sum(dim=1) for g in grads)
    for k in torch.nonzero(gradient_size == 0).flatten().tolist():
        problems[k] = problems[k] or f"failed: {_DIED}"
    return list(zip(checkpoints, problems))


def _failures(
    configs: Sequence[TrainConfig], excluded: Sequence[int | None], problems: Sequence[str | None]
) -> str:
    """The models of a batch whose training failed, by position (at most five spelled out)."""
    failed = [k for k, problem in enumerate(problems) if problem is not None]
    lines = [f"configs[{k}] = {_describe(configs[k], excluded[k])} {problems[k]}"
             for k in failed[:5]]
    if len(failed) > 5:
        lines.append(f"... and {len(failed) - 5} more")
    return (f"training failed for {len(failed)} of {len(configs)} models: " + "; ".join(lines)
            + f"; {_LOWER_LR}")


def _check_starts(
    starts: Sequence[tuple[int, Params] | None], configs: Sequence[TrainConfig], n: int
) -> None:
    """Refuse ``starts`` of another length, or a start step outside the first epoch."""
    if len(starts) != len(configs):
        raise ValueError(f"starts must hold one entry per config ({len(configs)}), got {len(starts)}")
    for k, start in enumerate(starts):
        if start is None:
            continue
        steps = math.ceil(n / configs[k].batch_size)
        if not (isinstance(start, tuple) and len(start) == 2 and isinstance(start[1], dict)):
            raise ValueError(f"starts[{k}] must be None or a pair (step, weights), got {start!r}")
        if isinstance(start[0], bool) or not isinstance(start[0], int) or not 0 <= start[0] < steps:
            raise ValueError(f"starts[{k}]: the step must be an integer in [0, {steps - 1}] (an "
                             f"update of the first epoch), got {start[0]!r}")


def train_many(
    configs: Sequence[TrainConfig],
    data: Split,
    *,
    model: nn.Module | None = None,
    exclude: Sequence[int | None] | None = None,
    keep: Sequence[ArrayLike | None] | None = None,
    device: str | torch.device = "cpu",
    chunk_size: int = 64,
    progress: bool = False,
    backend: str | None = None,
    n_jobs: int | None = None,
    starts: Sequence[tuple[int, Params] | None] | None = None,
    order_variant: str = "kept",
) -> list[TrainedModel]:
    """Train K models at once; model k takes exactly the steps of ``train(configs[k], ...)``.

    The parameters of up to ``chunk_size`` models are stacked and one backward pass gives every
    model's gradient of its mean batch loss (``SmallCNN`` runs as grouped convolutions, other
    architectures with ``torch.func.vmap`` over ``functional_call``). Models differ only in their
    seeds and in the example they leave out; a model with fewer examples gets zero-weight padding in
    its last batch and takes no update (nor weight decay) at a step where it has no example.
    Chunks are independent jobs: they run one after another in this process, or in parallel on
    local worker processes or a Dask cluster (``backend``), with the same results (bit for bit when
    the workers use as many torch threads as this process, see :mod:`infcore.parallel`).

    Parameters
    ----------
    configs : sequence of K TrainConfig
        Must share ``epochs``, ``lr``, ``batch_size`` and ``weight_decay``.
    data : Split
        Training set of n examples.
    model : nn.Module, optional
        Architecture; ``SmallCNN()`` when None.
    exclude : sequence of K (int or None), optional
        Training example left out by each model (None: keeps all); None for all models.
    keep : sequence of K (bool array of shape (n,) or None), optional
        Training subset of each model (None: all examples), for datamodels and the linear
        datamodeling score: model k visits ``epoch_order(n, order_seed, e)`` restricted to its
        subset. None for all models.
    device : str or torch.device
        Where to compute; the returned weights are on the CPU.
    chunk_size : int
        Most models trained together, >= 1; bounds the memory.
    progress : bool
        Show a tqdm progress bar (one tick per chunk).
    backend : {None, "loky", "dask"}
        Where the chunks run: in this process (None), in local worker processes (``"loky"``), or
        on the workers of the active ``distributed.Client`` (``"dask"``; create the Client first).
        See :mod:`infcore.parallel`.
    n_jobs : int or None
        Worker processes of ``backend="loky"`` (None: one per CPU core); None otherwise.
    starts : sequence of K ((int, Params) or None), optional
        Where each model's run starts: ``(s, weights)`` skips the first ``s`` updates of its first
        epoch and starts from ``weights``, which must be the weights that run has before update
        ``s`` (leave-one-out passes the full run's: a run without example i takes the same updates
        until the first batch that holds i); None starts from the initialisation. Put models with
        close ``s`` in the same chunk: a chunk skips only the updates that none of its models takes.
    order_variant : {"kept", "redrawn", "fresh"}
        How the models that leave out an example order the remaining ones
        (:func:`retraining_order`).

    Returns
    -------
    list of K TrainedModel, in the order of ``configs``

    Raises
    ------
    ValueError
        If ``data`` is empty, not finite, or does not fit ``model`` (see :func:`check_fits`).
    TrainingError
        After every model is trained, if some diverged or died (see :func:`train`), naming each
        such config by its position in ``configs``.
    """
    configs = list(configs)
    check_order_variant(order_variant)
    _shared_hyperparameters(configs)
    model = _default_model() if model is None else model
    check_fits(model, init_params(model, configs[0].init_seed), data, "training")
    _check_int("chunk_size", chunk_size, 1)
    excluded = [None] * len(configs) if exclude is None else list(exclude)
    if len(excluded) != len(configs):
        raise ValueError(
            f"exclude must hold one entry per config ({len(configs)}), got {len(excluded)}"
        )
    for i in excluded:
        _check_exclude(i, len(data))
    subsets = _check_keep(keep, len(configs), len(data))
    starts = [None] * len(configs) if starts is None else list(starts)
    _check_starts(starts, configs, len(data))
    check_backend(backend, n_jobs)
    chunks = [
        (configs[first : first + chunk_size], excluded[first : first + chunk_size], data.x,
         data.y, model, device, subsets[first : first + chunk_size],
         starts[first : first + chunk_size], order_variant)
        for first in range(0, len(configs), chunk_size)
    ]
    results: list[tuple[list[Params], str | None]] = []
    with tqdm(total=len(chunks), disable=not progress, desc="train_many", unit="chunk") as bar:
        for done in run_chunks(_train_chunk, chunks, backend=backend, n_jobs=n_jobs):
            results += done
            bar.update(1)
    problems = [problem for _, problem in results]
    if any(problem is not None for problem in problems):
        raise TrainingError(_failures(configs, excluded, problems))
    n_train, train_fingerprint = len(data), fingerprint(data)
    return [
        TrainedModel(
            model=model,
            params=kept[-1],
            checkpoints=kept,
            lrs=[float(config.lr)] * config.epochs,
            config=config,
            excluded=i,
            n_train=n_train,
            train_fingerprint=train_fingerprint,
            kept=subset,
        )
        for config, i, subset, (kept, _) in zip(configs, excluded, subsets, results)
    ]


def losses_float64(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: PerExampleLoss = cross_entropy,
) -> torch.Tensor:
    """Loss of each example (cross-entropy by default), evaluated in float64 from the weights.

    A confidently classified example has a loss near zero, where a float32 evaluation moves in steps
    of about 1.2e-7 (the float32 spacing near 1 inside the log-sum-exp): differences of such losses,
    which leave-one-out and TracInIdeal take, come out as a few multiples of that step. Evaluating
    the same weights in float64 resolves them.

    Parameters
    ----------
    model : nn.Module
    params : dict of str to Tensor
    x : Tensor of shape (n, ...), floating point
    y : Tensor of shape (n,), int64
    loss : callable
        Per-example loss, see :func:`per_example_loss`.

    Returns
    -------
    Tensor of shape (n,), float64, no gradient
    """
    with torch.no_grad():
        return per_example_loss(model, {k: v.double() for k, v in params.items()}, x.double(), y,
                                loss=loss)


# weight states per call of float64_losses's function that its callers use: at 200 test images,
# 8 read the patches once for 8 (bench_methods.py --only tracin_ideal measures the gain)
STATES_PER_CALL = 8


def float64_losses(
    model: nn.Module, data: Split, *, loss: PerExampleLoss = cross_entropy
) -> Callable[[Params | Sequence[Params]], torch.Tensor]:
    """:func:`losses_float64` of a fixed ``data``, as a function of the weights, for repeated calls.

    TracInIdeal evaluates every test loss after every SGD step. For :class:`SmallCNN` the first
    convolution, which takes most of a float64 forward pass, becomes one matrix product with the
    5 x 5 patches of ``data``, extracted once (about 3x faster than float64 ``conv2d`` on a CPU),
    and the 2 x 2 max-pooling two element-wise maxima; other architectures call
    :func:`losses_float64`. The two agree to float64 rounding. Several weight states passed
    together share that product: the patches, the largest operand, are read once for all of them
    (about 2x faster per state for the first convolution, at 8 states).

    Parameters
    ----------
    model : nn.Module
    data : Split of n examples
    loss : callable
        Per-example loss, see :func:`per_example_loss`.

    Returns
    -------
    callable
        ``losses(params)``: Tensor of shape (n,); ``losses([params_1, ..., params_S])``: Tensor of
        shape (S, n), row ``s`` the losses under ``params_s``; float64, no gradient.
    """
    if type(model) is not SmallCNN:
        def generic(params: Params | Sequence[Params]) -> torch.Tensor:
            if isinstance(params, Mapping):
                return losses_float64(model, params, data.x, data.y, loss=loss)
            return torch.stack([losses_float64(model, p, data.x, data.y, loss=loss)
                                for p in params])
        return generic
    n, side = len(data), data.x.shape[-1] - 4
    # (n, 25, side * side): column p of image j holds its 5 x 5 patch at output position p
    patches = F.unfold(data.x.double(), 5).contiguous()

    def stacked(name: str, states: Sequence[Params]) -> torch.Tensor:
        return torch.stack([p[name] for p in states]).double()

    def losses(params: Params | Sequence[Params]) -> torch.Tensor:
        states = [params] if isinstance(params, Mapping) else list(params)
        k = len(states)
        with torch.no_grad():
            # the first convolution of every state in one product: (n, k * channels, positions)
            h = torch.matmul(stacked("conv1.weight", states).flatten(0, 1).flatten(1), patches)
            h = h.view(n, -1, side, side)
            # a bias per channel commutes with the maximum: added to a quarter of the values
            h = F.relu(_max_pool_2x2(h) + stacked("conv1.bias", states).view(1, -1, 1, 1))
            h = h.view(n, k, -1, *h.shape[2:]).transpose(0, 1)
            h = torch.stack([F.conv2d(h[s], p["conv2.weight"].double(), p["conv2.bias"].double())
                             for s, p in enumerate(states)])
            h = F.relu(_max_pool_2x2(h.flatten(0, 1))).view(k, n, -1)
            h = F.relu(torch.baddbmm(stacked("fc1.bias", states).unsqueeze(1), h,
                                     stacked("fc1.weight", states).transpose(1, 2)))
            logits = torch.bmm(h, stacked("fc2.weight", states).transpose(1, 2))
            out = loss(logits.flatten(0, 1), data.y.repeat(k)).view(k, n)
        return out[0] if isinstance(params, Mapping) else out

    return losses


def _max_pool_2x2(h: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(h, 2)`` for even sides, as two element-wise maxima of strided views (in
    float64 on a CPU about 4x faster than ``max_pool2d``, which also records the arg-max)."""
    n, c, rows, cols = h.shape
    windows = h.view(n, c, rows // 2, 2, cols // 2, 2)
    pairs = torch.maximum(windows[:, :, :, 0], windows[:, :, :, 1])
    return torch.maximum(pairs[..., 0], pairs[..., 1])


def test_loss(trained: TrainedModel, data: Split) -> torch.Tensor:
    """Loss (``trained.loss``) of each example of ``data`` under the final weights, in float64.

    See :func:`losses_float64`.

    Returns
    -------
    Tensor of shape (n,), float64, on the CPU
    """
    return losses_float64(trained.model, trained.params, data.x, data.y, loss=trained.loss).cpu()


def accuracy(trained: TrainedModel, data: Split) -> float:
    """Fraction of ``data`` whose label is the arg-max logit under the final weights."""
    with torch.no_grad():
        logits = functional_call(trained.model, trained.params, (data.x,))
    return (logits.argmax(dim=1) == data.y).sum().item() / len(data)


# The name starts with "test"; this keeps pytest from collecting it when a test module imports it.
test_loss.__test__ = False  # type: ignore[attr-defined]
