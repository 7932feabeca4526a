"""The C allocator's heap pad: a speed setting for the short-lived tensors of batched training.

Each batched SGD step of :func:`infcore.training.train_many` allocates and frees tensors of a few
to tens of MB (the activations of K models at once). With glibc's default settings much of that
memory goes back to the operating system when it is freed, and the next step takes page faults to
get it again; on this project's 2-core machines that was about a quarter of a step
(``benchmarks/bench_training.py`` measures it in one process). Keeping a pad of free memory at the
top of the heap (``mallopt(M_TOP_PAD)``) avoids it. Only where memory comes from changes: the
arithmetic, and so every score, is the same (``tests/test_allocator.py``).

``import infcore`` sets the pad once per process (workers of ``backend="loky"`` or dask import
infcore too). ``INFCORE_HEAP_PAD_MB`` sets its size in MiB (default 256); 0 leaves the allocator
as it is. On a C library other than glibc (macOS, musl) nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

DEFAULT_PAD_MB = 256
ENV = "INFCORE_HEAP_PAD_MB"
_M_TOP_PAD = -2  # glibc's malloc.h
_MAX_MB = 2047  # mallopt takes a C int of bytes


def pad_from_environment(environ: dict[str, str] | None = None) -> int:
    """The heap pad in MiB that ``INFCORE_HEAP_PAD_MB`` asks for (``DEFAULT_PAD_MB`` when unset).

    Raises
    ------
    ValueError
        If the variable is not an integer in [0, 2047].
    """
    value = (os.environ if environ is None else environ).get(ENV, str(DEFAULT_PAD_MB)).strip()
    if not value.isdigit() or int(value) > _MAX_MB:
        raise ValueError(f"{ENV} must be an integer number of MiB in [0, {_MAX_MB}] (0: leave the C "
                         f"allocator as it is); got {value!r}")
    return int(value)


def pad_heap(megabytes: int) -> bool:
    """Keep ``megabytes`` MiB of free memory at the top of glibc's heap (``mallopt(M_TOP_PAD)``).

    Parameters
    ----------
    megabytes : int
        Size of the pad, in [0, 2047]; 0 restores glibc's default (128 KiB).

    Returns
    -------
    bool
        Whether the setting was made (False where the C library is not glibc).
    """
    if isinstance(megabytes, bool) or not isinstance(megabytes, int) or not 0 <= megabytes <= _MAX_MB:
        raise ValueError(f"megabytes must be an integer in [0, {_MAX_MB}]; got {megabytes!r}")
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # only glibc has it (and glibc's mallopt options)
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_TOP_PAD, megabytes << 20 if megabytes else 128 << 10))


def pad_heap_from_environment() -> bool:
    """:func:`pad_heap` with the size of ``INFCORE_HEAP_PAD_MB``; nothing when it is 0.

    Returns
    -------
    bool
        Whether a pad was set.
    """
    megabytes = pad_from_environment()
    return pad_heap(megabytes) if megabytes else False
