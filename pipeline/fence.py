"""A full memory barrier, for the rings' plain loads and stores across processes.

A ring's writer and readers share memory through numpy, with no atomics. x86 keeps stores in order
and loads in order, but the Pi's ARM cores need not: a reader could see a new write_pos before the
rows it counts, or copy rows before it sees the write that replaces them. libatomic's
atomic_thread_fence (a `dmb ish` on aarch64) forbids both; through ctypes it costs about 0.2 us,
called a few times per ring write or read.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

LIBRARY = "libatomic.so.1"
_SEQ_CST = 5  # C11 memory_order_seq_cst


def load_fence(library: str = LIBRARY) -> Callable[[int], None]:
    """libatomic's atomic_thread_fence(order); ImportError naming the package if it is missing."""
    try:
        atomic_thread_fence = ctypes.CDLL(library).atomic_thread_fence
    except (OSError, AttributeError) as error:
        raise ImportError(
            f"the shared-memory rings need atomic_thread_fence from {library} ({error}): "
            "install it with `sudo apt-get install libatomic1`"
        ) from error
    atomic_thread_fence.argtypes = [ctypes.c_int]
    atomic_thread_fence.restype = None
    return atomic_thread_fence


_atomic_thread_fence = load_fence()


def fence() -> None:
    """Every load and store before this call is seen by other cores before any after it."""
    _atomic_thread_fence(_SEQ_CST)
