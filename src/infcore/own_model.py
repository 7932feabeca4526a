"""Bring your own model: a network trained by your own code, and your data, as infcore's types.

The methods take a :class:`~infcore.training.TrainedModel` and two :class:`~infcore.data.Split`
objects. :func:`from_model` wraps any trained ``nn.Module`` (final weights, optional checkpoints
with their learning rates, a per-example loss, the weight decay of its objective) as a
``TrainedModel``; :func:`as_split` turns tensors, a ``Dataset`` or a ``DataLoader`` into a
``Split``. The peers take the same parts: captum's ``TracInCP(model, train_dataset, checkpoints,
checkpoints_load_func, loss_fn)``, dattri's ``AttributionTask(loss_func, model, checkpoints)``,
pyDVL's ``model.fit(loader)`` and ``loss``.

What each method needs:

======================  ===================================================================
method                  needs
======================  ===================================================================
``grad_dot``            the final weights and the loss
``grad_cos``            the final weights and the loss
``tracin_cp``           ``checkpoints`` and their ``lrs``
``influence_function``  at most ``max_params`` parameters (exact Hessian), ``weight_decay``
``representer``         ``model.features(x)`` and a bias-free last layer; ``lam`` when the
                        objective has no weight decay
``leave_one_out``       ``retrain=``, a function that trains your way on a given ``Split``
``tracin_ideal``        a model trained by :func:`infcore.training.train` (not available)
======================  ===================================================================

Contents: :func:`from_model`, :func:`as_split`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Union

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from infcore.data import Split
from infcore.errors import MissingPartError, NotPerExampleLossError
from infcore.models import Params
from infcore.training import PerExampleLoss, TrainedModel, cross_entropy

Checkpoint = Union[Mapping[str, torch.Tensor], str, os.PathLike]
Data = Union[Split, tuple, Dataset, DataLoader]


def _params_of(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> Params:
    """The trainable parameters of ``model`` taken from a ``state_dict``-like mapping."""
    names = [name for name, _ in model.named_parameters()]
    missing = [name for name in names if name not in state]
    if missing:
        raise MissingPartError(f"{where} lacks the model's parameters {missing}")
    return {name: state[name].detach().to("cpu", torch.float32, copy=True) for name in names}


def _load(checkpoint: Checkpoint, k: int) -> Mapping[str, torch.Tensor]:
    if isinstance(checkpoint, Mapping):
        return checkpoint
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"checkpoints[{k}] ({checkpoint}) does not hold a state_dict")
    return state


def _check_loss(loss: PerExampleLoss) -> None:
    reduction = getattr(loss, "reduction", "none")
    if reduction != "none":
        raise NotPerExampleLossError(
            f"the loss must return one value per example, but {type(loss).__name__} has "
            f"reduction={reduction!r}: use reduction='none'"
        )


def from_model(
    model: nn.Module,
    *,
    loss: PerExampleLoss = cross_entropy,
    checkpoints: Sequence[Checkpoint] = (),
    lrs: Sequence[float] | float | None = None,
    weight_decay: float = 0.0,
) -> TrainedModel:
    """Wrap a network trained by your own code, so that every method that does not replay
    infcore's training runs on it.

    Parameters
    ----------
    model : nn.Module
        The trained network; its current parameters are the final weights (copied, on the CPU,
        float32). Buffers (e.g. batch-norm statistics) stay those of the module.
    loss : callable
        Per-example loss ``loss(model(x), y) -> Tensor of shape (n,)``, e.g. ``nn.CrossEntropyLoss(
        reduction="none")`` or a function; cross-entropy by default. Without weight decay: that is
        added from ``weight_decay``.
    checkpoints : sequence of state_dict or path
        Weights saved during training (``model.state_dict()`` copies, or files written by
        ``torch.save(model.state_dict(), path)``), for TracInCP; may be empty.
    lrs : float or sequence of float, optional
        Learning rate in effect up to each checkpoint (one per checkpoint, or one for all); needed
        with checkpoints. With Adam or a scheduler, the rate the optimizer had at that point.
    weight_decay : float
        Coefficient ``lambda`` of an L2 term ``lambda / 2 * ||theta||^2`` of the training
        objective (it enters the Hessian of influence functions and the representer refit), >= 0.

    Returns
    -------
    TrainedModel
        With ``config=None``; ``leave_one_out`` then needs ``retrain=``.

    Raises
    ------
    MissingPartError
        When a checkpoint lacks a parameter of ``model``, or checkpoints come without ``lrs``.
    NotPerExampleLossError
        When ``loss`` is a module with a reduction other than ``"none"``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_loss(loss)
    checkpoints = list(checkpoints)
    if checkpoints and lrs is None:
        raise MissingPartError("checkpoints need their learning rates: pass lrs=[one per "
                               "checkpoint] (or one float for all)")
    if isinstance(lrs, (int, float)):
        lrs = [float(lrs)] * len(checkpoints)
    lrs = [] if lrs is None else [float(lr) for lr in lrs]
    if len(lrs) != len(checkpoints):
        raise ValueError(f"lrs must hold one learning rate per checkpoint ({len(checkpoints)}), "
                         f"got {len(lrs)}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    kept = [_params_of(model, _load(c, k), f"checkpoints[{k}]") for k, c in enumerate(checkpoints)]
    return TrainedModel(
        model=model,
        params=_params_of(model, model.state_dict(), "the model"),
        checkpoints=kept,
        lrs=lrs,
        config=None,
        loss=loss,
        weight_decay=float(weight_decay),
    )


def as_split(data: Data) -> Split:
    """Your data as a :class:`~infcore.data.Split`: all examples as two tensors, in order.

    Column ``i`` of every score matrix is example ``i`` of ``data``, so the order must be fixed.

    Parameters
    ----------
    data : Split, (x, y) tuple of tensors, Dataset or DataLoader
        A ``Dataset`` must yield ``(x, y)`` pairs; a ``DataLoader`` must yield ``(x, y)`` batches
        in a fixed order (``shuffle=False``). Everything is read into memory.

    Returns
    -------
    Split
        ``x`` of shape (n, ...) and ``y`` of shape (n, ...).
    """
    if isinstance(data, Split):
        return data
    if isinstance(data, tuple) and len(data) == 2 and all(torch.is_tensor(t) for t in data):
        x, y = data
    elif isinstance(data, DataLoader):
        if not isinstance(data.sampler, SequentialSampler):
            raise ValueError("the DataLoader must visit the examples in a fixed order: create it "
                             "with shuffle=False (or pass its Dataset)")
        batches = [tuple(batch) for batch in data]
        x = torch.cat([torch.as_tensor(b[0]) for b in batches])
        y = torch.cat([torch.as_tensor(b[1]) for b in batches])
    elif isinstance(data, Dataset):
        items = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
        x = torch.stack([torch.as_tensor(item[0]) for item in items])
        y = torch.stack([torch.as_tensor(item[1]) for item in items])
    else:
        raise TypeError("data must be a Split, an (x, y) tuple of tensors, a Dataset or a "
                        f"DataLoader; got {type(data).__name__}")
    if len(x) != len(y):
        raise ValueError(f"x and y must hold the same number of examples, got {len(x)} and {len(y)}")
    return Split(x, y)
