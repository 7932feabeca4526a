"""The heap pad: what INFCORE_HEAP_PAD_MB accepts, that the pad is really kept, and that it
leaves every number as it was."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest
import torch

from infcore import allocator
from infcore.data import load_mnist
from infcore.training import TrainConfig, train_many

# a fresh interpreter mallocs 1,000 blocks of 100 KB (under glibc's mmap threshold, so from the
# heap), frees them, and prints how much of the heap glibc keeps (mallinfo2's arena)
_ARENA = """
import ctypes, infcore
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
blocks = [libc.malloc(100_000) for _ in range(1000)]
for b in blocks:
    libc.free(b)
class Info(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
print(libc.mallinfo2().arena)
"""


def _kept_heap(pad: str) -> int:
    env = {**os.environ, allocator.ENV: pad}
    out = subprocess.run([sys.executable, "-c", _ARENA], env=env, capture_output=True, text=True,
                         check=True)
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_the_pad_is_kept_after_the_memory_is_freed():
    # 100 MB were used and freed: however much of it glibc trims back without a pad, its heap is
    # then at most that plus the interpreter's own (about 15 MB); with 256 MiB of pad it keeps at
    # least the pad
    assert _kept_heap("256") >= 256 << 20
    assert _kept_heap("0") < 200 << 20


def test_environment_values():
    assert allocator.pad_from_environment({}) == allocator.DEFAULT_PAD_MB
    assert allocator.pad_from_environment({allocator.ENV: "0"}) == 0
    assert allocator.pad_from_environment({allocator.ENV: " 64 "}) == 64
    for bad in ("-1", "abc", "1.5", "", "2048"):
        with pytest.raises(ValueError, match=allocator.ENV):
            allocator.pad_from_environment({allocator.ENV: bad})


def test_a_bad_value_stops_the_import_with_its_name():
    env = {**os.environ, allocator.ENV: "lots"}
    out = subprocess.run([sys.executable, "-c", "import infcore"], env=env, capture_output=True,
                         text=True)
    assert out.returncode != 0 and allocator.ENV in out.stderr and "'lots'" in out.stderr


def test_pad_heap_arguments_and_other_c_libraries(monkeypatch):
    for bad in (-1, 2048, 1.0, True):
        with pytest.raises(ValueError, match="megabytes"):
            allocator.pad_heap(bad)

    class Musl:  # has mallopt but not glibc's version function
        def mallopt(self, *args):
            raise AssertionError("must not be called")

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Musl())
    assert allocator.pad_heap(256) is False


def test_scores_do_not_depend_on_the_pad():
    train, _ = load_mnist(100, 20)
    configs = [TrainConfig(epochs=2, init_seed=s, order_seed=s) for s in range(4)]

    def weights():
        models = train_many(configs, train, exclude=[None, 3, 7, 50], chunk_size=4)
        return [m.params for m in models]

    try:
        assert allocator.pad_heap(0)
        without = weights()
        assert allocator.pad_heap(256)
        with_pad = weights()
    finally:
        allocator.pad_heap_from_environment()
    for a, b in zip(without, with_pad):
        assert all(torch.equal(a[name], b[name]) for name in a)
