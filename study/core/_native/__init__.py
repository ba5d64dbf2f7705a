"""Optional compiled CPU kernels: C++ sources next to this file, built on first use, via ctypes.

Each library is one C++ file compiled by the system compiler (`$CXX`, else g++ or c++) with
`-O3 -march=native` into a shared object, loaded with ctypes and called with raw pointers of
contiguous tensors. No torch headers are involved, so a build takes about a second and does not
depend on the torch version. Built objects are cached in `$STUDY_NATIVE_CACHE`, else
`$STUDY_CACHE/native`, else `~/.cache/mistudy/native` (outside the checkout), under a name that
hashes the source, the flags, the compiler's version and this CPU's feature flags: a node with
another CPU builds its own, never runs one built for a wider instruction set. Processes that
start together (Ray's trial workers) build each library once: the first takes a file lock, the
others wait for it and load its result; every object appears under its final name by an atomic
rename, never half written.

Everything here is optional. With `STUDY_NATIVE=0`, without a compiler, or when a build
fails, `load` returns None and callers use their torch code; a process that wanted the kernels
and could not have them says so in one warning line (the details are in `build_log`).
`STUDY_NATIVE=exact` keeps only the library whose results equal torch's bit for bit ("rng":
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

from study.contract import settings

try:
    import fcntl
except ImportError:  # not a POSIX system: concurrent builders rely on the atomic rename alone
    fcntl = None

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
    """Whether compiled code may be used (for library `name`), by STUDY_NATIVE
    (`settings.native_mode`): "0" none (every caller runs its torch code), "exact" only the
    libraries equal to torch bit for bit (EXACT), "1" (the default) all."""
    mode = settings.native_mode()
    if mode == "0":
        return False
    if mode == "exact":
        return name is None or name in EXACT
    return True


def cache_dir() -> Path:
    """Where built libraries are kept (`settings.native_cache_dir`)."""
    return settings.native_cache_dir()


def _compiler() -> str:
    """The compiler's path: $CXX exactly when set (a missing one is an error, not a reason to
    try another), else g++, else c++."""
    chosen = settings.cxx()
    if chosen is not None:
        found = shutil.which(chosen)
        if found is None:
            raise RuntimeError(f"the C++ compiler CXX={chosen!r} was not found")
        return found
    for name in ("g++", "c++"):
        found = shutil.which(name)
        if found is not None:
            return found
    raise RuntimeError("no C++ compiler found (g++ or c++; or set CXX)")


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


class _BuildLock:
    """An exclusive lock on `path` (flock; released when the holder exits, even killed) for
    the processes building the same library; without fcntl a no-op."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> _BuildLock:
        if fcntl is not None:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _compile(compiler: str, flags: list[str], source: Path, target: Path) -> None:
    """Compile `source` into `target`: into a private temporary file next to it, then an atomic
    rename, so no process ever loads a half-written object."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run(
            [compiler, *flags, "-o", tmp, str(source)], capture_output=True, text=True, timeout=300
        )
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            first_error = next((ln for ln in lines if "error:" in ln.split("/")[-1]), None)
            raise RuntimeError(
                f"{compiler} failed on {source.name} (exit {proc.returncode}): "
                f"{first_error or (lines[-1] if lines else 'no message')}"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _build(name: str) -> ctypes.CDLL:
    source_name, extra = LIBRARIES[name]
    source = _HERE / source_name
    compiler = _compiler()
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
    folder = cache_dir()
    target = folder / f"libmistudy_{name}_{key}.so"
    if target.exists():
        build_log[name] = f"cached {target}"
    else:
        folder.mkdir(parents=True, exist_ok=True)
        with _BuildLock(folder / f".{target.stem}.lock"):
            if target.exists():  # another process built it while this one waited
                build_log[name] = f"cached {target} (built by another process)"
            else:
                _compile(compiler, flags, source, target)
                build_log[name] = f"built {target}"
    lib = ctypes.CDLL(str(target))
    for fn, argtypes in _SIGNATURES[name].items():
        getattr(lib, fn).argtypes = argtypes
        getattr(lib, fn).restype = None
    return lib


_warned = False  # one line per process when the kernels cannot be had


def load(name: str) -> ctypes.CDLL | None:
    """The compiled library `name` ("rng" or "kernels"), or None when it cannot be had.

    Builds it on the first call in a process when the cache lacks it. Never raises for a
    missing compiler, a failed build or a library that does not load: returns None, records
    why in `build_log`, and warns once per process (one line).
    """
    global _warned
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
            except Exception as e:  # anything: the torch code is always there to fall back on
                reason = " ".join(str(e).split()) or type(e).__name__
                build_log[name] = f"unavailable: {reason}"
                _loaded[name] = None
                if not _warned:
                    _warned = True
                    log.warning(
                        "compiled CPU kernels unavailable (%s: %s); running the torch code "
                        "instead (slower; STUDY_NATIVE=0 skips the build)",
                        name,
                        reason,
                    )
        return _loaded[name]
