"""Leave-one-out influence: retrain without each training example, same initialisation and order."""

from __future__ import annotations

import numpy as np
import torch

from infcore.data import Split
from infcore.training import TrainedModel, per_example_loss, train_many


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
) -> np.ndarray:
    """``loss_without_i(t) - loss_with_all(t)`` for every training example ``i``.

    One model per training example is retrained with ``trained.config`` (same initialisation, same
    order of the remaining examples), ``chunk_size`` models at a time with
    :func:`infcore.training.train_many`; ``loss_with_all`` uses ``trained.params``.

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

    Returns
    -------
    scores : ndarray of shape (n_test, n_train), float64
    """
    if trained.excluded is not None:
        raise ValueError(
            "leave_one_out needs a model trained on all of `train`, but this one left out example "
            f"{trained.excluded}"
        )
    retrained = train_many(
        [trained.config] * len(train),
        train,
        model=trained.model,
        exclude=list(range(len(train))),
        device=device,
        chunk_size=chunk_size,
        progress=progress,
        backend=backend,
        n_jobs=n_jobs,
    )
    with torch.no_grad():
        with_all = per_example_loss(trained.model, trained.params, test.x, test.y).double()
        without = torch.stack(
            [per_example_loss(m.model, m.params, test.x, test.y).double() for m in retrained], dim=1
        )
    return (without - with_all[:, None]).numpy()
