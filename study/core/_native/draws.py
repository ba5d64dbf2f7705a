"""Random draws from a torch CPU generator, equal bit for bit to torch's, several times faster.

`randn(shape, gen)` is `torch.randn(shape, generator=gen)` and `rand(shape, gen)` is
`torch.rand(shape, generator=gen)`: the same values and the same generator state afterwards,
so a run that switches between them is unchanged. torch draws each 32-bit Mersenne Twister
output through a function call (~6 ns per value on a 2-core EPYC); rng.cpp regenerates and
tempers the state a vector at a time and runs torch's Box-Muller step 16 lanes wide.

The fast path needs a float32 result on the CPU, a CPU generator, the compiled "rng" library
and a one-time check in this process that it reproduces torch's draws here (torch picks its
Box-Muller code by CPU capability; the check fails, and torch is used, where it picked
another). Everything else goes to torch unchanged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from study.core._native import load

__all__ = ["randn", "rand", "fast_draws", "wm_signals"]

log = logging.getLogger("study.core._native.draws")

_checked: bool | None = None


def _lib():
    lib = load("rng")
    return lib if lib is not None and fast_draws() else None


def fast_draws() -> bool:
    """Whether the compiled draws are in use: built, and equal to torch's in this process."""
    global _checked
    if _checked is None:
        lib = load("rng")
        _checked = lib is not None and _matches_torch(lib)
        if lib is not None and not _checked:
            log.warning("compiled random draws differ from torch's on this machine; using torch's")
    return _checked


def _matches_torch(lib) -> bool:
    for n in (16, 1000, 4099):
        for kind in ("normal", "uniform"):
            ref_gen = torch.Generator().manual_seed(n)
            gen = torch.Generator().manual_seed(n)
            torch.rand(n % 700 + 1, generator=ref_gen)  # start mid-block
            torch.rand(n % 700 + 1, generator=gen)
            ref = (
                torch.randn(n, generator=ref_gen)
                if kind == "normal"
                else torch.rand(n, generator=ref_gen)
            )
            got = torch.empty(n)
            _fill(lib, got, gen, kind)
            if not (torch.equal(ref, got) and torch.equal(ref_gen.get_state(), gen.get_state())):
                return False
    return True


def _fill(lib, out: Tensor, gen: torch.Generator, kind: str) -> None:
    state = gen.get_state()  # (5056,) uint8: torch's MT19937 state with its position
    if kind == "normal":
        lib.mt_normal(state.data_ptr(), out.data_ptr(), out.numel(), 0.0, 1.0)
    else:
        lib.mt_uniform(state.data_ptr(), out.data_ptr(), out.numel())
    gen.set_state(state)


def _fast(gen: torch.Generator | None, dtype: torch.dtype, numel: int, minimum: int) -> bool:
    return (
        gen is not None
        and gen.device.type == "cpu"
        and dtype == torch.float32
        and numel >= minimum
        and _lib() is not None
    )


def randn(
    shape: Sequence[int],
    generator: torch.Generator,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """torch.randn(shape, generator=generator, dtype=dtype, device=device), same values."""
    return _draw(torch.randn, "normal", 16, shape, generator, dtype, device)


def rand(
    shape: Sequence[int],
    generator: torch.Generator,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """torch.rand(shape, generator=generator, dtype=dtype, device=device), same values."""
    return _draw(torch.rand, "uniform", 1, shape, generator, dtype, device)


def _draw(torch_fn, kind: str, minimum: int, shape, generator, dtype, device) -> Tensor:
    """`torch_fn(shape, ...)`, filled by the compiled generator (`kind`) where it applies: a CPU
    float32 draw of at least `minimum` values."""
    dev = torch.device(device) if device is not None else generator.device
    if dev.type != "cpu" or not _fast(generator, dtype, math.prod(int(d) for d in shape), minimum):
        return torch_fn(tuple(shape), generator=generator, dtype=dtype, device=dev)
    out = torch.empty(tuple(shape), dtype=dtype)
    _fill(_lib(), out, generator, kind)
    return out


def wm_signals(task, onsets: Tensor) -> tuple[Tensor, Tensor]:
    """`task._signals(onsets)` of a `WorkingMemory` task, equal bit for bit, ~6x faster.

    onsets (S, B, 2n, T + 1) bool on the CPU -> inputs (S, T_in, B, 2n) and targets
    (S, segment, B, n), float32, time-major. The ramp of the targets is computed with the same
    float64 operations in the same order as `ramp_targets` (rng.cpp, compiled without fused
    multiply-adds). Falls back to `task._signals` off the CPU or without the compiled library.
    """
    lib = load("rng")
    if lib is None or onsets.device.type != "cpu" or onsets.dtype != torch.bool:
        return task._signals(onsets)
    s, b, lines, t_plus = onsets.shape
    total = task.transient + task.seq_len
    onsets = onsets.contiguous()
    inputs = torch.empty(s, total, b, lines)
    targets = torch.empty(s, task.seq_len, b, lines // 2)
    lib.wm_signals(
        onsets.data_ptr(),
        s,
        b,
        lines // 2,
        t_plus,
        task.pulse_len,
        float(task.slope),
        task.transient,
        task.seq_len,
        task.target_lead,
        int(task.off_cue),
        inputs.data_ptr(),
        targets.data_ptr(),
    )
    return inputs, targets
