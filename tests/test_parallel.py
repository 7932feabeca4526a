"""Chunks of models run on a Dask cluster or local worker processes give the in-process results.

The oracle is the default in-process run. Every backend runs the same chunk function on the same
arguments, so with as many torch threads as the workers (one with ``threads_per_worker=1``;
``cpu_count // n_jobs`` for joblib's loky workers) the results must be exactly equal (tolerance
0). With other thread counts they may differ by float32 rounding (1.5e-8 was seen for chunks of
one model). The cluster is a ``distributed.LocalCluster`` of 2 worker processes.
"""

import joblib
import numpy as np
import pytest
import torch

distributed = pytest.importorskip("distributed")

from infcore.data import load_mnist  # noqa: E402
from infcore.methods.loo import leave_one_out  # noqa: E402
from infcore.parallel import BACKENDS, check_backend, connect, run_chunks  # noqa: E402
from infcore.training import TrainConfig, train, train_many  # noqa: E402

CONFIGS = [TrainConfig(epochs=2, batch_size=8, init_seed=k, order_seed=k + 10) for k in range(10)]
EXCLUDE = [None, 0, 23, 5, None, 11, 3, 17, 8, 22]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def task():
    return load_mnist(n_train=24, n_test=6, seed=0)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as local:
        yield local


def assert_same_models(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert (a.config, a.excluded) == (b.config, b.excluded)
        assert a.lrs == b.lrs and len(a.checkpoints) == len(b.checkpoints)
        for ca, cb in zip(a.checkpoints, b.checkpoints):
            for name in cb:
                assert torch.equal(ca[name], cb[name]), name
        assert all(torch.equal(a.params[name], b.params[name]) for name in b.params)


def test_train_many_on_dask_equals_the_in_process_run(task, cluster):
    train_split, _ = task
    expected = train_many(CONFIGS, train_split, exclude=EXCLUDE, chunk_size=4)
    with distributed.Client(cluster):
        got = train_many(CONFIGS, train_split, exclude=EXCLUDE, chunk_size=4, backend="dask")
    assert_same_models(got, expected)
    assert all(m.model is got[0].model for m in got)  # the caller's architecture, not copies


def test_leave_one_out_on_dask_equals_the_in_process_run(task, cluster):
    train_split, test_split = task
    trained = train(CONFIGS[0], train_split)
    expected = leave_one_out(trained, train_split, test_split, chunk_size=4)
    with distributed.Client(cluster):
        got = leave_one_out(trained, train_split, test_split, chunk_size=4, backend="dask")
    assert got.shape == (6, 24)
    np.testing.assert_array_equal(got, expected)


def test_train_many_on_loky_equals_the_in_process_run(task):
    train_split, _ = task
    # joblib gives each of the n_jobs loky workers cpu_count // n_jobs threads
    torch.set_num_threads(max(joblib.cpu_count() // 2, 1))
    try:
        expected = train_many(CONFIGS[:4], train_split, exclude=EXCLUDE[:4], chunk_size=2)
    finally:
        torch.set_num_threads(1)
    got = train_many(CONFIGS[:4], train_split, exclude=EXCLUDE[:4], chunk_size=2,
                     backend="loky", n_jobs=2)
    assert_same_models(got, expected)


def test_connect_joins_a_running_scheduler_by_its_address(task, cluster):
    train_split, _ = task
    expected = train_many(CONFIGS[:3], train_split, chunk_size=1)
    client = connect("dask", cluster.scheduler_address)
    try:
        assert connect("dask") is client  # now the active Client
        got = train_many(CONFIGS[:3], train_split, chunk_size=1, backend="dask")
    finally:
        client.close()
    assert_same_models(got, expected)


def test_connect_without_dask_returns_no_client_and_refuses_an_address():
    assert connect(None) is None and connect("loky") is None
    with pytest.raises(ValueError, match="scheduler applies only to backend='dask'"):
        connect(None, "tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="backend must be one of"):
        connect("slurm")


def test_run_chunks_keeps_the_order_of_the_chunks(cluster):
    chunks = [(k, 7) for k in range(23)]
    expected = [divmod(*args) for args in chunks]
    assert list(run_chunks(divmod, chunks)) == expected
    with distributed.Client(cluster):
        assert list(run_chunks(divmod, chunks, backend="dask")) == expected


@pytest.mark.parametrize("backend", ["Dask", "threads", "sequential", 1])
def test_unknown_backends_are_rejected_with_the_allowed_values(task, backend):
    with pytest.raises(ValueError, match=r"backend must be one of \[None, 'loky', 'dask'\]"):
        train_many(CONFIGS, task[0], backend=backend)
    assert BACKENDS == (None, "loky", "dask")


@pytest.mark.parametrize(
    ("backend", "n_jobs", "match"),
    [
        (None, 2, "n_jobs applies only to backend='loky'"),
        ("dask", 4, "n_jobs applies only to backend='loky'"),
        ("loky", 0, "n_jobs must be None, -1 or an integer >= 1"),
        ("loky", -2, "n_jobs must be None, -1 or an integer >= 1"),
        ("loky", 1.5, "n_jobs must be None, -1 or an integer >= 1"),
        ("loky", True, "n_jobs must be None, -1 or an integer >= 1"),
    ],
)
def test_bad_n_jobs_is_rejected(backend, n_jobs, match):
    with pytest.raises(ValueError, match=match):
        check_backend(backend, n_jobs)


def test_dask_without_an_active_client_says_to_create_one(task):
    missing = "active dask Client, and there is none: create one first"
    for check in (lambda: check_backend("dask"), lambda: connect("dask")):
        with pytest.raises(ValueError, match=missing):
            check()
    train_split, test_split = task
    trained = train(TrainConfig(epochs=1), train_split)
    with pytest.raises(ValueError, match="Client"):
        leave_one_out(trained, train_split, test_split, backend="dask")
    with pytest.raises(ValueError, match="Client"):
        run_chunks(divmod, [(1, 2)], backend="dask")  # raised at the call, before any chunk
