"""TracIn (Pruthi et al. 2020): the exact TracInIdeal and its checkpoint approximation TracInCP."""

from __future__ import annotations

import numpy as np
import torch

from infcore.data import Split
from infcore.errors import MissingPartError
from infcore.methods.gradients import per_example_grads
from infcore.models import Params
from infcore.training import STATES_PER_CALL, TrainedModel, float64_losses
from infcore.training import train as train_model


def tracin_cp(trained: TrainedModel, train: Split, test: Split) -> np.ndarray:
    """TracInCP: ``sum_k lrs[k] * grad L(W_k, train i) . grad L(W_k, test t)`` over checkpoints.

    Parameters
    ----------
    trained : TrainedModel
        Its ``checkpoints`` (weights at the end of each epoch) and ``lrs`` (learning rate of each
        epoch) are used.
    train : Split of n_train examples
    test : Split of n_test examples

    Returns
    -------
    scores : ndarray of shape (n_test, n_train), float64

    Raises
    ------
    MissingPartError
        When ``trained`` has no checkpoints.
    """
    if not trained.checkpoints:
        raise MissingPartError(
            "tracin_cp needs checkpoints and their learning rates: pass checkpoints=[state dicts "
            "or files] and lrs=[...] to infcore.own_model.from_model"
        )
    scores = torch.zeros(len(test), len(train), dtype=torch.float64)
    for params, lr in zip(trained.checkpoints, trained.lrs):
        g_train = per_example_grads(trained.model, params, train.x, train.y,
                                    loss=trained.loss).double()
        g_test = per_example_grads(trained.model, params, test.x, test.y,
                                   loss=trained.loss).double()
        scores += lr * (g_test @ g_train.T)
    return scores.numpy()


def tracin_ideal(
    trained: TrainedModel, train: Split, test: Split, *, atol: float = 1e-5
) -> np.ndarray:
    """TracInIdeal: every SGD step's change of each test loss, credited to the step's example.

    Training is replayed with :func:`infcore.training.train` (same configuration, same left-out
    example); at each step, ``loss before - loss after`` of every test example is added to the
    score of the one training example of that step, summed over epochs. The scores of a test
    example therefore sum to ``L(W_0) - L(W_T)``, its loss at initialisation minus its final loss.
    The losses are evaluated in float64 (:func:`infcore.training.float64_losses`, the weights of
    ``STATES_PER_CALL`` consecutive steps at a time): one step changes a small test loss by less
    than float32 resolves.

    Parameters
    ----------
    trained : TrainedModel
        Must have been trained with ``batch_size == 1`` on ``train``.
    train : Split of n_train examples
    test : Split of n_test examples
    atol : float
        Largest absolute difference allowed between the replayed and the stored final weights.

    Returns
    -------
    scores : ndarray of shape (n_test, n_train), float64
        The column of a left-out example (``trained.excluded``) is 0.

    Raises
    ------
    ValueError
        When the batch size is not 1, the model was trained on a subset of ``train``
        (``train_many`` with ``keep``), or the replay does not end at ``trained.params`` (the model
        was not trained on ``train`` with its configuration).
    MissingPartError
        When ``trained`` was not trained by :mod:`infcore.training` (no ``config`` to replay).
    """
    if trained.config is None:
        raise MissingPartError(
            "tracin_ideal replays the training step by step with infcore.training.train, so it "
            "needs a model trained by infcore (trained.config); a model trained by your own loop "
            "cannot be replayed: use tracin_cp with its checkpoints instead"
        )
    if trained.kept is not None:
        raise ValueError(
            "tracin_ideal replays the training on all of `train`, but this model was trained on a "
            f"subset of {int(trained.kept.sum())} of its {len(trained.kept)} examples "
            "(train_many with keep=)"
        )
    if trained.config.batch_size != 1:
        raise ValueError(
            "tracin_ideal needs a model trained with batch_size=1 (each step then has one "
            f"training example to credit), got batch_size={trained.config.batch_size}"
        )
    scores = torch.zeros(len(test), len(train), dtype=torch.float64)
    test_losses = float64_losses(trained.model, test, loss=trained.loss)
    # the weights after each step wait in blocks, whose test losses are evaluated together
    pending: list[tuple[int, Params]] = []
    last: list[torch.Tensor] = []  # the test losses before the first pending step

    def credit_pending() -> None:
        after = test_losses([params for _, params in pending])
        before = torch.cat([last.pop()[None], after[:-1]])
        for (example, _), change in zip(pending, before - after):
            scores[:, example] += change
        last.append(after[-1])
        pending.clear()

    def credit(step: int, batch_index: torch.Tensor, before: Params, after: Params) -> None:
        if not last:
            last.append(test_losses(before))
        pending.append((int(batch_index[0]), after))
        if len(pending) == STATES_PER_CALL:
            credit_pending()

    replay = train_model(
        trained.config, train, model=trained.model, exclude=trained.excluded, on_step=credit
    )
    if pending:
        credit_pending()
    for name, p in trained.params.items():
        if not torch.allclose(replay.params[name], p, rtol=0.0, atol=atol):
            raise ValueError(
                f"replaying the training does not reproduce trained.params ({name!r} differs by "
                f"{(replay.params[name] - p).abs().max().item():.3g} > atol={atol:g}): was the "
                "model trained on `train` with trained.config, and with as many torch threads "
                "as this replay?"
            )
    return scores.numpy()
