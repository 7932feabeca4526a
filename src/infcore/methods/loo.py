"""Leave-one-out influence: retrain without each training example, same initialisation and order."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from infcore.data import Split
from infcore.errors import MissingPartError
from infcore.training import (STATES_PER_CALL, TrainConfig, TrainedModel, check_order_variant,
                               epoch_order, first_epoch_states, float64_losses, test_loss,
                               train_many)


def leave_one_out(
    trained: TrainedModel,
    train: Split,
    test: Split,
    *,
    chunk_size: int = 64,
    progress: bool = False,
    device: str | torch.device = "cpu",
    backend: str | None = None,
    n_jobs: int | None = None,
    retrain: Callable[[Split], TrainedModel] | None = None,
    share_prefix: bool = True,
    columns: Sequence[int] | None = None,
) -> np.ndarray:
    """``loss_without_i(t) - loss_with_all(t)`` for every training example ``i`` (or those in
    ``columns``).

    One model per training example is retrained with ``trained.config`` (same initialisation, same
    order of the remaining examples), ``chunk_size`` models at a time with
    :func:`infcore.training.train_many`; ``loss_with_all`` uses ``trained.params``. A run without
    example ``i`` takes the same updates as the full run until the first batch that holds ``i``,
    so each retraining starts there, from the full run's weights (``share_prefix``), and the
    retrainings are chunked in the order of that batch. The losses are
    evaluated in float64 (:func:`infcore.training.test_loss`): in float32, the many test losses
    near zero of a well-trained model would make most scores a few multiples of 1.2e-7.

    Parameters
    ----------
    trained : TrainedModel
        Trained on all of ``train`` (``trained.excluded`` is None).
    train : Split of n_train examples
    test : Split of n_test examples
    chunk_size : int
        Models retrained together, >= 1; bounds the memory.
    progress : bool
        Show a progress bar.
    device : str or torch.device
        Where to retrain.
    backend : {None, "loky", "dask"}
        Where the chunks of retrainings run: this process, local worker processes, or the active
        dask Client (see :func:`infcore.training.train_many`); the scores are the same.
    n_jobs : int or None
        Worker processes of ``backend="loky"``; None otherwise.
    retrain : callable, optional
        For a model trained by your own code (``trained.config`` is None): ``retrain(data)``
        trains the same way on ``data`` (``train`` without one example, in the order of
        ``train``) and returns a :class:`~infcore.training.TrainedModel`, e.g. from
        :func:`infcore.own_model.from_model`. Fix its seeds, so that the scores measure the
        example and not the run. It is called once per training example, one after another
        (``chunk_size``, ``device``, ``backend`` and ``n_jobs`` are then unused).
    share_prefix : bool
        Start each retraining at the first batch that holds its left-out example (True), or from
        the initialisation (False). The scores are the same up to float32 rounding; False is the
        plain definition, kept to measure what sharing saves.
    columns : sequence of int, optional
        Only these training examples are left out, one retraining each (distinct indices in
        ``[0, n_train)``); column ``k`` of the result is ``columns[k]``'s score. A leave-one-out
        matrix costs one retraining per column, so a subset costs its share of the full matrix.
        Its scores are the full matrix's columns up to float32 rounding (the retrainings are
        batched in other company). None: every example.

    Returns
    -------
    scores : ndarray of shape (n_test, n_train), or (n_test, len(columns)); float64

    Raises
    ------
    MissingPartError
        When ``trained`` has no config and no ``retrain`` is given.
    ValueError
        When ``trained`` left out an example or was trained on a subset of ``train``, or when
        ``columns`` are not distinct training indices.
    """
    examples = list(range(len(train))) if columns is None else check_columns(columns, len(train))
    if retrain is not None:
        with_all = test_loss(trained, test)
        differences = []
        for i in tqdm(examples, disable=not progress, desc="leave_one_out"):
            kept = torch.cat([torch.arange(i), torch.arange(i + 1, len(train))])
            differences.append(test_loss(retrain(train.subset(kept)), test) - with_all)
        return torch.stack(differences, dim=1).numpy()
    if trained.config is None:
        raise MissingPartError(
            "leave_one_out retrains the model without each training example: this model was not "
            "trained by infcore.training, so pass retrain=, a function data -> TrainedModel that "
            "trains it your way"
        )
    if trained.excluded is not None:
        raise ValueError(
            "leave_one_out needs a model trained on all of `train`, but this one left out example "
            f"{trained.excluded}"
        )
    if trained.kept is not None:
        raise ValueError(
            "leave_one_out needs a model trained on all of `train`, but this one was trained on a "
            f"subset of {int(trained.kept.sum())} of its {len(trained.kept)} examples "
            "(train_many with keep=)"
        )
    retrained = retrain_without_each(trained, train, chunk_size=chunk_size, progress=progress,
                                     device=device, backend=backend, n_jobs=n_jobs,
                                     share_prefix=share_prefix, columns=examples)
    test_losses = float64_losses(trained.model, test, loss=trained.loss)
    with_all = test_losses(trained.params)
    # evaluated a few models at a time (see float64_losses), in the order of the examples
    block = STATES_PER_CALL
    without = torch.cat([test_losses([model.params for model in retrained[i:i + block]])
                         for i in range(0, len(retrained), block)])
    return (without.T - with_all[:, None]).numpy()


def retrain_without_each(
    trained: TrainedModel,
    train: Split,
    *,
    chunk_size: int = 64,
    progress: bool = False,
    device: str | torch.device = "cpu",
    backend: str | None = None,
    n_jobs: int | None = None,
    share_prefix: bool = True,
    order_variant: str = "kept",
    columns: Sequence[int] | None = None,
) -> list[TrainedModel]:
    """The retrainings of :func:`leave_one_out`: ``trained.config`` without each training example
    (or each of ``columns``, distinct training indices).

    With the kept order (``order_variant="kept"``) and ``share_prefix``, each retraining starts at
    the first batch that holds its example, from the full run's weights, and the retrainings are
    chunked in the order of that batch; other orders (:func:`infcore.training.retraining_order`)
    differ from the full run from the first update, so they start from the initialisation.

    Returns
    -------
    list of TrainedModel: entry ``k`` leaves out example ``k`` (``columns[k]`` with ``columns``)
    """
    check_order_variant(order_variant)
    config, n = trained.config, len(train)
    examples = list(range(n)) if columns is None else check_columns(columns, n)
    if share_prefix and order_variant == "kept":
        first = first_batches(config, n)[examples]
        states = first_epoch_states(config, train, int(first.max()), model=trained.model,
                                    device=device)
        ranks = torch.argsort(first, stable=True).tolist()
        starts = [(int(first[k]), states[int(first[k])]) for k in ranks]
    else:
        ranks, starts = list(range(len(examples))), None
    retrained = train_many([config] * len(examples), train, model=trained.model,
                           exclude=[examples[k] for k in ranks], device=device,
                           chunk_size=chunk_size, progress=progress, backend=backend,
                           n_jobs=n_jobs, starts=starts, order_variant=order_variant)
    by_column: list[TrainedModel | None] = [None] * len(examples)
    for k, model in zip(ranks, retrained):
        by_column[k] = model
    return by_column


def check_columns(columns: Sequence[int], n: int) -> list[int]:
    """``columns`` as a list of ints, checked to be distinct training indices in ``[0, n)``.

    Raises
    ------
    ValueError
        When one is out of range, repeated or not an integer, or when there is none.
    """
    values = list(columns)
    valid = bool(values) and all(isinstance(c, (int, np.integer)) and not isinstance(c, bool)
                                 for c in values)
    if valid:
        values = [int(c) for c in values]
        valid = len(set(values)) == len(values) and all(0 <= c < n for c in values)
    if not valid:
        raise ValueError(f"columns must be distinct integer training indices in [0, {n - 1}], at "
                         f"least one; got {values[:10]}")
    return values


def first_batches(config: TrainConfig, n: int) -> torch.Tensor:
    """For each training example, the update of the first epoch whose batch holds it.

    Returns
    -------
    Tensor of shape (n,), int64: ``position of i in epoch_order(n, order_seed, 0) // batch_size``
    """
    position = torch.empty(n, dtype=torch.long)
    position[epoch_order(n, config.order_seed, 0)] = torch.arange(n)
    return position // config.batch_size


def rounding_noise(
    trained: TrainedModel,
    train: Split,
    test: Split,
    *,
    copies: int = 16,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Differences between two leave-one-out retrainings that only float32 rounding tells apart.

    The models that leave out training examples ``0 .. copies-1`` are retrained twice with
    ``trained.config``: together, in one chunk of ``copies`` models of
    :func:`infcore.training.train_many` (the way :func:`leave_one_out` batches its retrainings), and
    one at a time. In exact arithmetic the two are equal;
    in float32 a batch of models of another size sums in another order. Their test-loss
    differences are the resolution of a leave-one-out score: a score of that size cannot be told
    apart from rounding.

    Parameters
    ----------
    trained : TrainedModel
        Trained on all of ``train``; only its config and architecture are used.
    train : Split of n_train examples
    test : Split of n_test examples
    copies : int
        Retrainings compared, between 2 and n_train.
    device : str or torch.device

    Returns
    -------
    ndarray of shape (n_test, copies), float64: ``loss_together(t) - loss_alone(t)``
    """
    if not (isinstance(copies, int) and 2 <= copies <= len(train)):
        raise ValueError(f"copies must be an integer in [2, {len(train)}]; got {copies!r}")
    losses = []
    for chunk_size in (copies, 1):
        retrained = train_many([trained.config] * copies, train, model=trained.model,
                               exclude=list(range(copies)), device=device, chunk_size=chunk_size)
        losses.append(torch.stack([test_loss(m, test) for m in retrained], dim=1))
    return (losses[0] - losses[1]).numpy()
