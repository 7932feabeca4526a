"""Independent jobs run in this process, in local worker processes, or on a Dask cluster.

Sweeps of many models (leave-one-out retrainings, ensembles) are split into chunks that depend on
nothing but their own arguments, so they can run anywhere. :func:`run_chunks` runs them through
joblib:

``backend=None`` (the default)
    One after another in this process.
``backend="loky"``
    In ``n_jobs`` local worker processes (joblib's process pool).
``backend="dask"``
    On the workers of the active ``distributed.Client``, which the caller creates first, e.g.
    ``Client(LocalCluster())`` or ``Client(SLURMCluster(...))`` from dask-jobqueue; the cluster's
    size decides how many chunks run at once.

Every backend calls the same function on the same arguments: the results are the same bit for bit
when the workers use as many torch threads as this process, and otherwise may differ by float32
rounding (sums taken in another order). A
process that did not create the cluster (a notebook run by papermill) joins it by its scheduler's
address with :func:`connect`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from joblib import Parallel, delayed, parallel_config

T = TypeVar("T")

#: allowed values of ``backend``
BACKENDS: tuple[str | None, ...] = (None, "loky", "dask")


def _distributed() -> Any:
    """The ``distributed`` module, or an error that says how to install it."""
    try:
        import distributed
    except ImportError as error:
        raise ImportError(
            "backend='dask' needs dask.distributed: `pip install 'infcore[cluster]'`"
        ) from error
    return distributed


def _active_dask_client() -> Any:
    """The ``distributed.Client`` that ``backend="dask"`` will use, or a clear error."""
    try:
        return _distributed().get_client()
    except ValueError:
        raise ValueError(
            "backend='dask' runs on the active dask Client, and there is none: create one first, "
            "e.g. `from distributed import Client, LocalCluster; client = Client(LocalCluster())`"
        ) from None


def check_backend(backend: str | None, n_jobs: int | None = None) -> None:
    """Check ``backend`` and ``n_jobs`` before any work starts.

    Parameters
    ----------
    backend : {None, "loky", "dask"}
        Where chunks run (see the module's description).
    n_jobs : int or None
        Worker processes of ``backend="loky"``: an integer >= 1, or -1 for one per CPU core; None
        means -1. Must be None with the other backends (a Dask cluster's size is set by the
        cluster itself).

    Raises
    ------
    ValueError
        If ``backend`` or ``n_jobs`` is not allowed, or ``backend="dask"`` and no dask Client is
        active.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if n_jobs is not None:
        if backend != "loky":
            raise ValueError(
                f"n_jobs applies only to backend='loky' (with backend={backend!r} it must be "
                f"None), got {n_jobs!r}"
            )
        is_int = isinstance(n_jobs, int) and not isinstance(n_jobs, bool)
        if not is_int or not (n_jobs >= 1 or n_jobs == -1):
            raise ValueError(f"n_jobs must be None, -1 or an integer >= 1, got {n_jobs!r}")
    if backend == "dask":
        _active_dask_client()


def connect(backend: str | None, scheduler: str | None = None) -> Any:
    """The dask Client that ``backend="dask"`` will use, connected to ``scheduler`` if given.

    For a process that did not create the cluster itself, such as a notebook executed by
    papermill: ``connect("dask", "tcp://host:8786")`` connects to a running scheduler (e.g. that of
    a ``SLURMCluster``, ``cluster.scheduler_address``) and makes it the active Client. Keep the
    returned Client referenced while the work runs.

    Parameters
    ----------
    backend : {None, "loky", "dask"}
    scheduler : str or None
        Address of a dask scheduler; None uses the active Client. Only with ``backend="dask"``.

    Returns
    -------
    distributed.Client or None
        None unless ``backend="dask"``.

    Raises
    ------
    ValueError
        If ``backend`` is not allowed, ``scheduler`` is given with another backend, or
        ``backend="dask"`` has neither a scheduler nor an active Client.
    """
    if backend != "dask":
        check_backend(backend)
        if scheduler is not None:
            raise ValueError(
                f"scheduler applies only to backend='dask' (backend={backend!r}), got {scheduler!r}"
            )
        return None
    if scheduler is None:
        return _active_dask_client()
    return _distributed().Client(scheduler)


def run_chunks(
    fn: Callable[..., T],
    chunks: Sequence[tuple[Any, ...]],
    *,
    backend: str | None = None,
    n_jobs: int | None = None,
) -> Iterator[T]:
    """``fn(*args)`` for every ``args`` in ``chunks``, yielded in the order of ``chunks``.

    The backend is checked at once (before any chunk runs); the results are yielded as soon as
    each one and those before it are done, so a caller can show progress.

    Parameters
    ----------
    fn : callable
        A module-level function or a ``functools.partial`` of one: the other backends than None
        pickle it and its arguments to send them to the workers.
    chunks : sequence of tuples
        Positional arguments of each call.
    backend : {None, "loky", "dask"}
        Where the calls run: this process, local worker processes, or the active dask Client.
    n_jobs : int or None
        Worker processes of ``backend="loky"`` (see :func:`check_backend`).

    Returns
    -------
    iterator over the K results, K = len(chunks)

    Raises
    ------
    ValueError
        As :func:`check_backend`.
    """
    check_backend(backend, n_jobs)
    if backend is None:
        return (fn(*args) for args in chunks)
    return _dispatched(fn, chunks, backend, -1 if n_jobs is None else n_jobs)


def _dispatched(
    fn: Callable[..., T], chunks: Sequence[tuple[Any, ...]], backend: str, n_jobs: int
) -> Iterator[T]:
    with parallel_config(backend=backend, n_jobs=n_jobs):
        # batch_size=1: every chunk is already a sizeable job of its own.
        yield from Parallel(return_as="generator", batch_size=1)(
            delayed(fn)(*args) for args in chunks
        )
