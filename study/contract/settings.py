"""Machine settings: every environment variable mistudy reads, read here and nowhere else.

Our own settings share the prefix `STUDY_`; the third-party variables we honour (MLflow's
tracking URI, Ray's cluster address) are read here too, so this module is the one list of what
the environment can change (README.md, "Environment"). Settings are read when asked for, not at
import, so a test or a Ray worker sees the environment of the moment.

Renamed settings keep working under their old `MISTUDY_` name: the new name wins when both are
set, and the old one is read with one `RenamedSettingWarning` per name and process. Torch-free,
so `analysis` (which needs the study home and the tracking URI) may import it.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

__all__ = [
    "SETTINGS",
    "RENAMED",
    "RenamedSettingWarning",
    "read",
    "study_home",
    "tracking_uri",
    "optuna_storage",
    "git_commit",
    "cache_dir",
    "cuda_graphs",
    "NATIVE_MODES",
    "native_mode",
    "native_cache_dir",
    "cxx",
    "ray_address",
]

# every variable read from the environment -> what it sets (the README's table lists the same);
# STUDY_RAY_TEMP_DIR and the other options of cluster/local-up.sh are read by the shell scripts
SETTINGS: dict[str, str] = {
    "STUDY_HOME": "folder of the stores, checkpoints and reports (default ./studies)",
    "STUDY_OPTUNA_STORAGE": "Optuna RDB URL (default sqlite:///$STUDY_HOME/optuna.db)",
    "STUDY_GIT_COMMIT": "the commit recorded when the code is not a git checkout",
    "STUDY_CACHE": "folder of the cached Lorenz/Rössler datasets (default ~/.cache/mistudy)",
    "STUDY_CUDA_GRAPHS": "1 = replay leaky scans on CUDA as captured CUDA graphs",
    "STUDY_NATIVE": "compiled CPU kernels: 1 every one (default), exact the bit-identical, 0 none",
    "STUDY_NATIVE_CACHE": "folder of the built CPU kernels (default $STUDY_CACHE/native)",
    "CXX": "the C++ compiler that builds the CPU kernels (default g++, else c++)",
    "MLFLOW_TRACKING_URI": "MLflow store (default sqlite:///$STUDY_HOME/mlflow.db)",
    "RAY_ADDRESS": "the Ray cluster `study run` joins (default: a local Ray)",
}

# new name -> old name, still read (with a deprecation line) when the new one is not set
RENAMED: dict[str, str] = {
    "STUDY_CACHE": "MISTUDY_CACHE",
    "STUDY_CUDA_GRAPHS": "MISTUDY_CUDA_GRAPHS",
    "STUDY_NATIVE": "MISTUDY_NATIVE",
    "STUDY_NATIVE_CACHE": "MISTUDY_NATIVE_CACHE",
    "STUDY_RAY_TEMP_DIR": "MISTUDY_RAY_TEMP_DIR",
}


class RenamedSettingWarning(DeprecationWarning):
    """An environment variable was read under its old name; the message names the new one."""


# DeprecationWarning is hidden outside __main__; this one is for the person who set the
# variable, so show it unless warnings were configured on the command line (-W, PYTHONWARNINGS)
if not sys.warnoptions:
    warnings.filterwarnings("always", category=RenamedSettingWarning)

_WARNED: set[str] = set()  # old names already reported in this process


def read(name: str, default: str | None = None) -> str | None:
    """The value of setting `name`: the variable `name` if set (even to ""), else its old name
    (see RENAMED) if set, with one RenamedSettingWarning per old name and process, else
    `default`."""
    if name in os.environ:
        return os.environ[name]
    old = RENAMED.get(name)
    if old is not None and old in os.environ:
        if old not in _WARNED:
            _WARNED.add(old)
            warnings.warn(
                f"the environment variable {old} is deprecated; set {name} instead "
                f"({old} is read while {name} is unset)",
                RenamedSettingWarning,
                stacklevel=3,
            )
        return os.environ[old]
    return default


def study_home() -> Path:
    """STUDY_HOME made absolute (default ./studies), so Ray workers and jobs in temporary
    working directories all write to the same place."""
    return Path(read("STUDY_HOME", "studies")).expanduser().resolve()


def tracking_uri() -> str | None:
    """MLFLOW_TRACKING_URI, or None when unset or empty."""
    return read("MLFLOW_TRACKING_URI") or None


def optuna_storage() -> str | None:
    """STUDY_OPTUNA_STORAGE, or None when unset or empty."""
    return read("STUDY_OPTUNA_STORAGE") or None


def git_commit() -> str:
    """STUDY_GIT_COMMIT (the commit of code that is not a git checkout), else "unknown"."""
    return read("STUDY_GIT_COMMIT", "unknown")


def cache_dir() -> Path:
    """STUDY_CACHE (was MISTUDY_CACHE), else ~/.cache/mistudy; an empty value is unset."""
    env = read("STUDY_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mistudy"


def cuda_graphs() -> bool:
    """Whether STUDY_CUDA_GRAPHS (was MISTUDY_CUDA_GRAPHS) is "1" (default "0")."""
    return read("STUDY_CUDA_GRAPHS", "0") == "1"


# STUDY_NATIVE's values: every compiled kernel, only those equal to torch bit for bit, none
NATIVE_MODES = ("1", "exact", "0")


def native_mode() -> str:
    """STUDY_NATIVE (was MISTUDY_NATIVE), one of NATIVE_MODES; unset or empty: "1".

    Raises:
        ValueError: on any other value.
    """
    mode = read("STUDY_NATIVE") or "1"
    if mode not in NATIVE_MODES:
        raise ValueError(
            f"STUDY_NATIVE must be one of {', '.join(NATIVE_MODES)} (every compiled kernel, "
            f"only the bit-identical ones, none), but got {mode!r}"
        )
    return mode


def native_cache_dir() -> Path:
    """STUDY_NATIVE_CACHE (was MISTUDY_NATIVE_CACHE), else `cache_dir()`/native; an empty
    value is unset."""
    env = read("STUDY_NATIVE_CACHE")
    return Path(env) if env else cache_dir() / "native"


def cxx() -> str | None:
    """CXX, the C++ compiler to build the CPU kernels with, or None when unset or empty."""
    return read("CXX") or None


def ray_address() -> str | None:
    """RAY_ADDRESS, or None when unset or empty."""
    return read("RAY_ADDRESS") or None
