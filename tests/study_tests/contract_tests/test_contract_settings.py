"""Machine settings (study.contract.settings): the one reader of the environment, one prefix
(STUDY_), the old MISTUDY_ names still read with a deprecation warning."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from study.contract import settings

REPO = Path(__file__).resolve().parents[3]

ALL_NAMES = sorted({*settings.SETTINGS, *settings.RENAMED, *settings.RENAMED.values()})


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No setting from the caller's shell, and no old name reported yet in this process."""
    for name in ALL_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(settings, "_WARNED", set())


def test_defaults_when_nothing_is_set(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation line without an old name
        assert settings.study_home() == tmp_path.resolve() / "studies"
        assert settings.tracking_uri() is None
        assert settings.optuna_storage() is None
        assert settings.git_commit() == "unknown"
        assert settings.cache_dir() == tmp_path / "me" / ".cache" / "mistudy"
        assert settings.cuda_graphs() is False
        assert settings.native_mode() == "1"
        assert settings.native_cache_dir() == tmp_path / "me" / ".cache" / "mistudy" / "native"
        assert settings.cxx() is None
        assert settings.ray_address() is None


def test_each_setting_reads_its_variable(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    monkeypatch.setenv("STUDY_HOME", "~/rel/home")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("STUDY_OPTUNA_STORAGE", "sqlite:////abs/optuna.db")
    monkeypatch.setenv("STUDY_GIT_COMMIT", "abc123")
    monkeypatch.setenv("STUDY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("STUDY_CUDA_GRAPHS", "1")
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    monkeypatch.setenv("STUDY_NATIVE", "exact")
    monkeypatch.setenv("CXX", "clang++")
    assert settings.native_mode() == "exact"
    assert settings.native_cache_dir() == tmp_path / "cache" / "native"  # under STUDY_CACHE
    assert settings.cxx() == "clang++"
    monkeypatch.setenv("STUDY_NATIVE_CACHE", str(tmp_path / "kernels"))
    assert settings.native_cache_dir() == tmp_path / "kernels"
    assert settings.study_home() == (tmp_path / "me" / "rel" / "home").resolve()
    assert settings.tracking_uri() == "http://127.0.0.1:5000"
    assert settings.optuna_storage() == "sqlite:////abs/optuna.db"
    assert settings.git_commit() == "abc123"
    assert settings.cache_dir() == tmp_path / "cache"
    assert settings.cuda_graphs() is True
    assert settings.ray_address() == "http://127.0.0.1:8265"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("STUDY_CUDA_GRAPHS", "0", False),
        ("STUDY_CUDA_GRAPHS", "true", False),
        ("STUDY_CUDA_GRAPHS", "", False),
        ("MLFLOW_TRACKING_URI", "", None),
        ("STUDY_OPTUNA_STORAGE", "", None),
        ("RAY_ADDRESS", "", None),
    ],
)
def test_empty_or_other_values_fall_back(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    reader = {
        "STUDY_CUDA_GRAPHS": settings.cuda_graphs,
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "STUDY_OPTUNA_STORAGE": settings.optuna_storage,
        "RAY_ADDRESS": settings.ray_address,
    }[name]
    assert reader() is expected


@pytest.mark.parametrize("value", ["fast", "true", "2", " 1"])
def test_an_unknown_native_mode_is_an_error(monkeypatch, value):
    monkeypatch.setenv("STUDY_NATIVE", value)
    with pytest.raises(ValueError, match=r"STUDY_NATIVE must be one of 1, exact, 0") as e:
        settings.native_mode()
    assert repr(value) in str(e.value)


def test_an_empty_native_mode_means_the_default(monkeypatch):
    monkeypatch.setenv("STUDY_NATIVE", "")
    assert settings.native_mode() == "1"


def test_an_empty_cache_variable_means_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("STUDY_CACHE", "")
    assert settings.cache_dir() == tmp_path / ".cache" / "mistudy"


@pytest.mark.parametrize(("new", "old"), sorted(settings.RENAMED.items()))
def test_the_old_name_works_with_one_deprecation_warning(monkeypatch, new, old):
    monkeypatch.setenv(old, "from-the-old-name")
    with pytest.warns(settings.RenamedSettingWarning) as caught:
        assert settings.read(new) == "from-the-old-name"
        assert settings.read(new) == "from-the-old-name"  # read again: no second warning
    assert len(caught) == 1
    message = str(caught[0].message)
    assert old in message and new in message and "deprecated" in message
    assert issubclass(settings.RenamedSettingWarning, DeprecationWarning)


@pytest.mark.parametrize(("new", "old"), sorted(settings.RENAMED.items()))
def test_the_new_name_wins_over_the_old_one_without_a_warning(monkeypatch, new, old):
    monkeypatch.setenv(old, "old")
    monkeypatch.setenv(new, "new")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert settings.read(new) == "new"


def test_old_names_through_the_readers(monkeypatch, tmp_path):
    monkeypatch.setenv("MISTUDY_CACHE", str(tmp_path / "old-cache"))
    monkeypatch.setenv("MISTUDY_CUDA_GRAPHS", "1")
    with pytest.warns(settings.RenamedSettingWarning, match="MISTUDY_CACHE"):
        assert settings.cache_dir() == tmp_path / "old-cache"
    with pytest.warns(settings.RenamedSettingWarning, match="MISTUDY_CUDA_GRAPHS"):
        assert settings.cuda_graphs() is True


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ALL_NAMES and k != "PYTHONWARNINGS"}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**base, "PYTHONPATH": str(REPO), **env},
        timeout=60,
        check=True,
    )


def test_the_deprecation_is_shown_by_default_once_per_name_and_process(tmp_path):
    # outside pytest's warning filters, as a user sees it: DeprecationWarning is hidden by
    # default, this one is not
    code = (
        "from study.contract import settings\n"
        "for _ in range(3):\n"
        "    print(settings.cache_dir(), settings.cuda_graphs())\n"
    )
    out = _python(code, MISTUDY_CACHE=str(tmp_path), MISTUDY_CUDA_GRAPHS="1")
    assert out.stdout.splitlines() == [f"{tmp_path} True"] * 3
    lines = [line for line in out.stderr.splitlines() if "RenamedSettingWarning" in line]
    assert len(lines) == 2, out.stderr
    assert "MISTUDY_CACHE" in lines[0] and "STUDY_CACHE instead" in lines[0]
    assert "MISTUDY_CUDA_GRAPHS" in lines[1] and "STUDY_CUDA_GRAPHS instead" in lines[1]


def test_the_settings_module_is_light():
    code = (
        "import sys, study.contract.settings, study.contract.text\n"
        "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'ray', 'mlflow', 'pydantic')"
        " if m in sys.modules))"
    )
    assert _python(code).stdout.strip() == "[]"


_READ = re.compile(
    r"""os\.(?:environ\.get|getenv)\(\s*["']([A-Za-z_]+)["']"""
    r"""|os\.environ\[\s*["']([A-Za-z_]+)["']\s*\](?!\s*=)"""
)


def test_no_module_but_settings_reads_a_setting():
    # every read of one of our variables (STUDY_*, MISTUDY_*, and the third-party ones in
    # SETTINGS) in study/, analysis/ and bench/ goes through study.contract.settings
    ours = {*settings.SETTINGS, *settings.RENAMED, *settings.RENAMED.values()}
    readers = []
    for folder in ("study", "analysis", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel == "study/contract/settings.py":
                continue
            for m in _READ.finditer(path.read_text()):
                name = m.group(1) or m.group(2)
                if name in ours or name.startswith(("STUDY_", "MISTUDY_")):
                    readers.append(f"{rel}: {name}")
    assert readers == []


def test_the_pattern_finds_reads_and_skips_writes():
    found = [
        m.group(1) or m.group(2)
        for m in _READ.finditer(
            'os.environ.get("STUDY_HOME", "x"); os.getenv(\'RAY_ADDRESS\'); '
            'os.environ["MLFLOW_TRACKING_URI"]; os.environ["STUDY_X"] = "1"'
        )
    ]
    assert found == ["STUDY_HOME", "RAY_ADDRESS", "MLFLOW_TRACKING_URI"]


def test_the_readme_lists_every_setting():
    readme = (REPO / "README.md").read_text()
    for name in settings.SETTINGS:
        assert f"| `{name}` |" in readme, name
