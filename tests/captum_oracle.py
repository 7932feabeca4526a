"""captum on an infcore model: the independent references for ``tracin_cp`` and
``influence_function``.

Shared by ``tests/test_methods_tracin.py``, ``tests/test_own_model.py`` and
``benchmarks/bench_methods.py``.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch
from captum.influence import NaiveInfluenceFunction, TracInCP
from torch import nn
from torch.utils.data import TensorDataset

from infcore.data import Split
from infcore.training import TrainedModel


def captum_tracin_cp(
    trained: TrainedModel, train_split: Split, test_split: Split, folder: Path
) -> np.ndarray:
    """captum's TracInCP scores, shape (n_test, n_train): checkpoints saved as files in ``folder``,
    each learning rate returned by the loading function, a sum-reduced loss."""
    paths = []
    for k, (params, lr) in enumerate(zip(trained.checkpoints, trained.lrs)):
        paths.append(str(Path(folder) / f"checkpoint_{k}.pt"))
        torch.save({"params": params, "lr": lr}, paths[-1])

    def load(model: nn.Module, path: str) -> float:
        saved = torch.load(path)
        model.load_state_dict(saved["params"])
        return saved["lr"]

    tracin = TracInCP(
        copy.deepcopy(trained.model),
        TensorDataset(train_split.x, train_split.y),
        paths,
        checkpoints_load_func=load,
        loss_fn=nn.CrossEntropyLoss(reduction="sum"),
        batch_size=len(train_split),
        sample_wise_grads_per_batch=True,
    )
    with warnings.catch_warnings():
        # captum marks the test images as requiring gradients itself, and says so.
        warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require")
        return tracin.influence((test_split.x, test_split.y)).double().numpy()


def captum_influence(
    trained: TrainedModel, train_split: Split, test_split: Split, folder: Path, hessian_reg: float
) -> np.ndarray:
    """captum's ``NaiveInfluenceFunction`` (exact Hessian, every eigenvector kept), shape
    (n_test, n_train). captum's Hessian is that of the *summed* loss: it equals
    ``n_train * (H_mean + hessian_reg / n_train)``, so these scores are infcore's with
    ``damping = hessian_reg / n_train``, divided by ``n_train``."""
    path = str(Path(folder) / "final.pt")
    torch.save(trained.params, path)

    def load(model: nn.Module, path: str) -> float:
        model.load_state_dict(torch.load(path), strict=False)
        return 1.0

    size = sum(p.numel() for p in trained.params.values())
    influence = NaiveInfluenceFunction(
        copy.deepcopy(trained.model),
        TensorDataset(train_split.x, train_split.y),
        path,
        checkpoints_load_func=load,
        loss_fn=nn.CrossEntropyLoss(reduction="none"),
        batch_size=len(train_split),
        projection_dim=size,
        hessian_reg=hessian_reg,
        hessian_inverse_tol=1e-12,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return influence.influence((test_split.x, test_split.y)).double().numpy()
