"""Shared fixtures."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: tiny models run many times faster on shared cores, and a
    comparison of two runs needs the same thread count on both sides."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def full_precision_convolutions():
    """cuDNN without TF32 for one test: TF32 convolutions (on by default in torch) round their
    inputs to 10-bit mantissas, which alone exceeds a 1e-4 comparison with the CPU."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = before
