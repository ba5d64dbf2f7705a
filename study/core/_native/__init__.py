"""Optional compiled CPU kernels: C++ sources next to this file, built on first use, via ctypes.

Each library is one C++ file compiled by the system compiler (`$CXX`, else g++ or c++) with
`-O3 -march=native` into a shared object, loaded with ctypes and called with raw pointers of
contiguous tensors. No torch headers are involved, so a build takes about a second and does not
depend on the torch version. Built objects are cached in `$MISTUDY_NATIVE_CACHE`, else
`$MISTUDY_CACHE/native`, else `~/.cache/mistudy/native`, under a name that hashes the source,
the flags, the compiler's version and this CPU's feature flags: a node with another CPU builds
its own, never runs one built for a wider instruction set.

Everything here is optional. With `MISTUDY_NATIVE=0`, without a compiler, or when a build
fails, `load` returns None (a warning is logged once) and callers use their torch code;
`MISTUDY_NATIVE=exact` keeps only the library whose results equal torch's bit for bit ("rng":
the random draws and the working-memory signals).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

__all__ = ["load", "enabled", "LIBRARIES", "cache_dir", "build_log"]

log = logging.getLogger("study.core._native")

_HERE = Path(__file__).resolve().parent
_COMMON = [
    "-O3",
    "-march=native",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-fno-math-errno",
    "-Wno-psabi",
]
# library name -> (source file, extra flags)
LIBRARIES: dict[str, tuple[str, tuple[str, ...]]] = {
    # exact torch-equal random draws: nothing may be fused that torch did not fuse
    "rng": ("rng.cpp", ("-ffp-contract=off",)),
    "kernels": ("kernels.cpp", ("-ffp-contract=fast",)),
}

_P, _I, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
# exported function -> argument types (all return void)
_SIGNATURES: dict[str, dict[str, list]] = {
    "rng": {
        "mt_uniform": [_P, _P, _I],
        "mt_normal": [_P, _P, _I, _F, _F],
        "wm_signals": [
            _P,
            _I,
            _I,
            _I,
            _I,
            _I,
            ctypes.c_double,
            _I,
            _I,
            _I,
            ctypes.c_int32,
            _P,
            _P,
        ],
    },
    "kernels": {
        "tanh_array": [_P, _P, _I],
        "leaky_net_forward": [
            _P,
            _I,
            _P,
            _I,
            _F,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _F,
            _I,
            _I,
            _I,
            _I,
            _I,
            _I,
            _P,
            _P,
            _P,
            _P,
            _P,
        ],
        "leaky_net_backward": [
            _P,
            _I,
            _P,
            _P,
            _P,
            _P,
            _P,
            _F,
            _I,
            _I,
            _I,
            _I,
            _I,
            _I,
            _P,
            _P,
            _P,
            _P,
            _P,
            _I,
            _F,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
        ],
        "gru_forward": [
            _P,
            _I,
            _P,
            _I,
            _F,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _I,
            _I,
            _I,
            _I,
            _I,
            _I,
            _P,
            _P,
            _P,
        ],
        "gru_backward": [
            _P,
            _I,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _I,
            _I,
            _I,
            _I,
            _I,
            _I,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
        ],
        "critic_forward": [
            _I,
            _I,
            _I,
            _I,
            _I,
            _I,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _F,
            _P,
            _P,
        ],
        "critic_stats": [
            _I,
            _I,
            _I,
            _I,
            _I,
            _I,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _F,
            _P,
            _P,
            ctypes.c_int32,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
        ],
        "critic_backward": [
            _I,
            _I,
            _I,
            _I,
            _I,
            _I,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _F,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
        ],
    },
}

_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL | None] = {}
build_log: dict[str, str] = {}  # library name -> what happened (built, cached, or the error)


# libraries whose results equal torch's bit for bit (the others agree to float rounding)
EXACT = ("rng",)


def enabled(name: str | None = None) -> bool:
    """Whether compiled code may be used (for library `name`), by MISTUDY_NATIVE: "0" none
    (every caller runs its torch code), "exact" only the libraries equal to torch bit for bit
    (EXACT), anything else (the default "1") all."""
    mode = os.environ.get("MISTUDY_NATIVE", "1")
    if mode == "0":
        return False
    if mode == "exact":
        return name is None or name in EXACT
    return True


def cache_dir() -> Path:
    """Where built libraries are kept."""
    if os.environ.get("MISTUDY_NATIVE_CACHE"):
        return Path(os.environ["MISTUDY_NATIVE_CACHE"])
    if os.environ.get("MISTUDY_CACHE"):
        return Path(os.environ["MISTUDY_CACHE"]) / "native"
    return Path.home() / ".cache" / "mistudy" / "native"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(compiler: str) -> str:
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return compiler


def _build(name: str) -> ctypes.CDLL:
    source_name, extra = LIBRARIES[name]
    source = _HERE / source_name
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler found ($CXX, g++ or c++)")
    flags = [*_COMMON, *extra]
    key = hashlib.sha256(
        "\n".join(
            [
                source.read_text(),
                " ".join(flags),
                _version(compiler),
                _cpu_flags(),
                platform.machine(),
            ]
        ).encode()
    ).hexdigest()[:16]
    target = cache_dir() / f"libmistudy_{name}_{key}.so"
    if target.exists():
        build_log[name] = f"cached {target}"
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        # a private temporary name, then an atomic rename: concurrent builders never clash
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            proc = subprocess.run(
                [compiler, *flags, "-o", tmp, str(source)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if proc.returncode != 0:
                raise RuntimeError(
                    f"{compiler} failed on {source.name}: {proc.stderr.strip()[-2000:]}"
                )
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        build_log[name] = f"built {target}"
    lib = ctypes.CDLL(str(target))
    for fn, argtypes in _SIGNATURES[name].items():
        getattr(lib, fn).argtypes = argtypes
        getattr(lib, fn).restype = None
    return lib


def load(name: str) -> ctypes.CDLL | None:
    """The compiled library `name` ("rng" or "kernels"), or None when it cannot be had.

    Builds it on the first call in a process when the cache lacks it. Never raises for a
    missing compiler or a failed build: logs one warning and returns None.
    """
    if name not in LIBRARIES:
        raise ValueError(
            f"_native.load(): library must be one of {tuple(LIBRARIES)}, but got {name!r}"
        )
    if not enabled(name):
        return None
    with _lock:
        if name not in _loaded:
            try:
                _loaded[name] = _build(name)
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                build_log[name] = f"unavailable: {e}"
                log.warning("native %s kernels unavailable, using torch: %s", name, e)
                _loaded[name] = None
        return _loaded[name]
