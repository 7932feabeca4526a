"""The small convolutional network used throughout the book, and its parameters as plain tensors.

The network is deliberately tiny (3,008 parameters) so that the exact Hessian of the training loss
fits in memory and many copies can be trained at once with ``torch.func``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

Params = dict[str, torch.Tensor]


class SmallCNN(nn.Module):
    """Two convolution blocks and two linear layers for 28x28 single-channel images.

    conv 1->4 (5x5), max-pool 2, conv 4->8 (5x5), max-pool 2, linear 128->16, linear 16->n_classes.
    The last layer has no bias, so that the logits are exactly ``features(x) @ W.T``: this is what the
    representer decomposition of Yeh et al. (2018) needs.

    Parameters
    ----------
    n_classes : int
        Number of output logits (2 for every task in the book).
    """

    def __init__(self, n_classes: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, kernel_size=5)
        self.conv2 = nn.Conv2d(4, 8, kernel_size=5)
        self.fc1 = nn.Linear(128, 16)
        self.fc2 = nn.Linear(16, n_classes, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last hidden layer.

        Parameters
        ----------
        x : Tensor of shape (n, 1, 28, 28)

        Returns
        -------
        Tensor of shape (n, 16)
        """
        # relu(max_pool(h)) equals max_pool(relu(h)) exactly, values and gradients (both are
        # monotone), and the ReLU then touches a quarter of the values
        h = torch.relu(torch.max_pool2d(self.conv1(x), 2))
        h = torch.relu(torch.max_pool2d(self.conv2(h), 2))
        return torch.relu(self.fc1(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (n, n_classes) for images of shape (n, 1, 28, 28)."""
        return self.fc2(self.features(x))


def init_params(model: nn.Module, seed: int) -> Params:
    """PyTorch's default initialisation of ``model``'s parameters, drawn from ``seed`` alone.

    Neither ``model`` nor the global random state is changed, so the result does not depend on what
    ran before.

    Parameters
    ----------
    model : nn.Module
        Architecture whose parameters are initialised.
    seed : int
        Initialisation seed.

    Returns
    -------
    dict of str to Tensor
        A fresh tensor for every parameter, keyed as in ``model.named_parameters()``.
    """
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return {name: p.detach().clone() for name, p in fresh.named_parameters()}


def n_params(params: Params) -> int:
    """Total number of scalars in ``params``."""
    return sum(p.numel() for p in params.values())


def describe(n_classes: int = 2) -> str:
    """The network in one line, with its parameter count (for the book's pages)."""
    count = sum(p.numel() for p in SmallCNN(n_classes).parameters())
    return (f"a small CNN (conv 1→4 and 4→8, 5×5, each with 2×2 max-pooling; linear 128→16 and "
            f"16→{n_classes} without bias) of {count:,} parameters, with its exact Hessian")
