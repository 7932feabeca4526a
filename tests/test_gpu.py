"""On a CUDA device, training many models and the methods that compute there match the CPU.

Skipped without a CUDA device. The oracle is the same computation on the CPU, to 1e-4 (absolute on
the weights, relative to the largest entry for scores and Hessians). cuDNN's TF32 convolutions,
on by default in torch, round their inputs to 10-bit mantissas and would alone exceed that
tolerance, so they are turned off for these tests (fixture ``full_precision_convolutions``).
"""

import numpy as np
import pytest
import torch
from torch import nn

from infcore.data import Split, load_mnist
from infcore.methods import hessian, leave_one_out
from infcore.training import TrainConfig, train, train_many

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.usefixtures("full_precision_convolutions"),
]


@pytest.fixture(scope="module")
def task():
    return load_mnist(n_train=40, n_test=10, seed=0)


def max_abs_diff(a: dict, b: dict) -> float:
    return max((a[name] - b[name]).abs().max().item() for name in b)


def test_train_many_on_cuda_equals_cpu_in_chunks(task):
    train_split, _ = task
    configs = [TrainConfig(epochs=2, batch_size=8, init_seed=k, order_seed=k) for k in range(6)]
    exclude = [None, 0, 39, None, 7, 20]
    on_cpu = train_many(configs, train_split, exclude=exclude, chunk_size=4)
    on_gpu = train_many(configs, train_split, exclude=exclude, chunk_size=4, device="cuda")
    for a, b in zip(on_gpu, on_cpu):
        assert all(p.device.type == "cpu" for p in a.params.values())
        for ca, cb in zip(a.checkpoints, b.checkpoints):
            assert max_abs_diff(ca, cb) <= 1e-4


def test_leave_one_out_on_cuda_equals_cpu(task):
    train_split, test_split = task
    trained = train(TrainConfig(epochs=2, batch_size=8), train_split)
    on_cpu = leave_one_out(trained, train_split, test_split, chunk_size=16)
    on_gpu = leave_one_out(trained, train_split, test_split, chunk_size=16, device="cuda")
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=0, atol=1e-4 * np.abs(on_cpu).max())


def test_hessian_on_cuda_equals_cpu(task):
    # A small convolutional network (198 parameters) keeps the CPU oracle fast; the Hessian's
    # code path (a convolution, then fully connected layers) is the small CNN's.
    train_split, _ = task
    model = nn.Sequential(nn.Conv2d(1, 2, 5, stride=4), nn.ReLU(), nn.Flatten(), nn.Linear(72, 2))
    trained = train(TrainConfig(epochs=2, batch_size=8), train_split, model=model)
    on_cpu = hessian(model, trained.params, train_split, 1e-3)
    params = {name: p.cuda() for name, p in trained.params.items()}
    data = Split(train_split.x.cuda(), train_split.y.cuda())
    on_gpu = hessian(model, params, data, 1e-3)
    assert on_gpu.device.type == "cuda" and on_gpu.shape == (198, 198)
    scale = on_cpu.abs().max().item()
    assert (on_gpu.cpu() - on_cpu).abs().max().item() <= 1e-4 * scale
