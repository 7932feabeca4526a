"""infcore: influence methods and the experiments of *Revisiting Methods for Finding Influential
Examples* (Karthikeyan K and Søgaard, AAAI 2022)."""

__version__ = "0.1.0"

from infcore.allocator import pad_heap_from_environment as _pad_heap

_pad_heap()  # a speed setting only (see infcore.allocator); INFCORE_HEAP_PAD_MB=0 turns it off
