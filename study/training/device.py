"""Where a trial runs: the torch device a config names, and a process-wide allocator tweak.

Kept apart from the training loop: neither is training logic, and `keep_freed_memory` is a
glibc setting a benchmark wants without building a Trainer.
"""

from __future__ import annotations

import ctypes

import torch

__all__ = ["resolve_device", "keep_freed_memory"]


def resolve_device(name: str) -> torch.device:
    """The device of `train.device`: "auto" is CUDA when visible, else the CPU.

    Raises:
        ValueError: "cuda" is asked for but no CUDA device is visible.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is 'cuda' but no CUDA device is visible to this process")
    return torch.device(name)


_ALLOCATOR_TUNED = False


def keep_freed_memory() -> None:
    """Make glibc reuse freed large blocks instead of returning them to the kernel at once.

    The critic's activations are ~80 MB per layer at the reference size (40 000 × 512 floats);
    by default every such tensor is a fresh mmap whose pages fault in on first touch, which cost
    as much as the matrix products around them (a critic step went from ~1.05 s to ~0.72 s on
    2 cores). Blocks up to 512 MiB come from the heap; more than 1 GiB free at its top is still
    given back (keeping everything let fragmentation grow a 16-seed reference run past 24 GB).
    Process-wide; a no-op off glibc.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return
    _ALLOCATOR_TUNED = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 512 << 20)  # M_MMAP_THRESHOLD: blocks up to 512 MiB from the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: give back only beyond 1 GiB free
    except (OSError, AttributeError):
        pass
