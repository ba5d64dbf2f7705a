"""Tests for cluster/: manifests and launcher configs against Ray, Kubernetes and pyproject facts.

Fast checks parse and cross-check every file; the `cluster`+`slow` test runs local-up.sh and
local-down.sh for real on free ports (about 40 s on 2 cores).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import jsonschema
import mlflow
import pytest
import ray
import torch
import yaml
from cluster_helpers import free_port as _free_port
from cluster_helpers import script_env as _script_env
from cluster_helpers import session_pids as _session_pids
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from ray._private.runtime_env.packaging import create_package
from ray._private.thirdparty.pathspec import PathSpec
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.runtime_env import RuntimeEnv

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
LOCAL_UP = CLUSTER / "local-up.sh"
LOCAL_DOWN = CLUSTER / "local-down.sh"
YAML_FILES = sorted(CLUSTER.rglob("*.yaml"))
RAY_UP_FILES = ["ray-up.aws-gpu.yaml", "ray-up.onprem.yaml"]
KUBERAY_FILES = {"raycluster.gpu.yaml": "RayCluster", "rayjob.study.yaml": "RayJob"}
PY_TAG = f"py{sys.version_info.major}{sys.version_info.minor}"
# `$(NAME)` is Kubernetes' env reference; `$$(NAME)` is its escape.
K8S_VAR_REF = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _one(path: Path, kind: str) -> dict:
    found = [d for d in _docs(path) if d.get("kind") == kind]
    assert len(found) == 1, f"{path.name}: expected one {kind}, found {len(found)}"
    return found[0]


def _cluster_specs() -> list[tuple[str, dict]]:
    rc = _one(CLUSTER / "raycluster.gpu.yaml", "RayCluster")["spec"]
    rj = _one(CLUSTER / "rayjob.study.yaml", "RayJob")["spec"]["rayClusterSpec"]
    return [("raycluster", rc), ("rayjob", rj)]


def _pods(spec: dict) -> list[tuple[str, dict, dict]]:
    """(group name, rayStartParams, pod spec) for the head and every worker group."""
    head = spec["headGroupSpec"]
    pods = [("head", head.get("rayStartParams", {}), head["template"]["spec"])]
    for group in spec["workerGroupSpecs"]:
        params = group.get("rayStartParams", {})
        pods.append((group["groupName"], params, group["template"]["spec"]))
    return pods


def _env(container: dict) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


# --- every YAML file -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(CLUSTER)))
def test_cluster_yaml_parses_into_mappings(path):
    docs = _docs(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        assert isinstance(doc, dict)
        if "apiVersion" in doc:  # a Kubernetes object needs a kind and a name
            assert doc.get("kind") and doc.get("metadata", {}).get("name")


def test_cluster_yaml_set_is_complete():
    names = {str(p.relative_to(CLUSTER)) for p in YAML_FILES}
    assert {
        "runtime_env.yaml",
        "raycluster.gpu.yaml",
        "rayjob.study.yaml",
        "storage.yaml",
        "mlflow/deployment.yaml",
        *RAY_UP_FILES,
    } <= names


# --- runtime_env.yaml ----------------------------------------------------------------------------

RUNTIME_ENV = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())

# Paths the job needs, and junk each exclude pattern is meant for.
KEEP = [
    "pyproject.toml",
    "README.md",
    "study/__init__.py",
    "study/tasks/chaos.py",
    "analysis/report.py",
    "search_spaces/demo.yaml",
    "search_spaces/phase-wm.yaml",
    "cluster/runtime_env.yaml",
    "bench/run.py",
    "docs/run-data.md",
    "tests/study_tests/test_mi.py",
    "study/studies.py",
    "analysis/runs.py",
]
JUNK = [
    ".git/HEAD",
    ".venv/bin/python",
    "study/__pycache__/mi.cpython-311.pyc",
    "study/mi.pyc",
    "mistudy.egg-info/PKG-INFO",
    ".pytest_cache/v/x",
    ".ruff_cache/x",
    ".mypy_cache/x",
    ".cache/x",
    "node_modules/x/index.js",
    "build/lib/x.py",
    "dist/x.whl",
    "studies/mlflow.db",
    "studies/demo/tuner.pkl",
    "mlruns/0/meta.yaml",
    "mlartifacts/1/x.npz",
    "ray_results/exp/result.json",
    "runs/x.json",
    "reports/report.html",
    "bench/results/bench.json",
    "optuna.db",
    "optuna.db-journal",
    "x.sqlite",
    "net.pt",
    "trial.ckpt",
]


def test_runtime_env_accepted_by_ray():
    env = RuntimeEnv(**RUNTIME_ENV)  # Ray's own validation of field names and types
    assert env["working_dir"] == "."
    assert env["env_vars"]["PYTHONUNBUFFERED"] == "1"
    assert all(isinstance(v, str) for v in env["env_vars"].values())


@pytest.mark.parametrize("pattern", RUNTIME_ENV["excludes"])
def test_runtime_env_exclude_pattern_is_sane(pattern):
    assert isinstance(pattern, str) and pattern == pattern.strip() and pattern
    assert ".." not in pattern and not pattern.startswith("./")
    spec = PathSpec.from_lines("gitwildmatch", [pattern])  # the matcher Ray uses
    assert not any(spec.match_file(p) for p in KEEP), f"{pattern!r} excludes project files"
    assert any(spec.match_file(p) for p in JUNK), f"{pattern!r} matches none of the known junk"


@pytest.mark.parametrize(("rel", "kept"), [(p, True) for p in KEEP] + [(p, False) for p in JUNK])
def test_runtime_env_excludes_path_from_working_dir_zip(tmp_path, rel, kept):
    root = tmp_path / "repo"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text("x")
    (root / "pyproject.toml").write_text("[project]\n")
    zip_path = tmp_path / "pkg.zip"
    create_package(str(root), zip_path, include_gitignore=False, excludes=RUNTIME_ENV["excludes"])
    assert (rel in zipfile.ZipFile(zip_path).namelist()) is kept


def test_runtime_env_zip_of_repository_is_small(tmp_path):
    zip_path = tmp_path / "pkg.zip"
    create_package(str(REPO), zip_path, include_gitignore=True, excludes=RUNTIME_ENV["excludes"])
    names = zipfile.ZipFile(zip_path).namelist()
    assert "pyproject.toml" in names and "study/__init__.py" in names
    assert not [n for n in names if n.startswith((".git/", ".venv/", "studies/"))]
    assert zip_path.stat().st_size < 20 * 2**20


# --- KubeRay manifests ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), KUBERAY_FILES.items())
def test_kuberay_manifest_kind(name, kind):
    doc = _one(CLUSTER / name, kind)
    assert doc["apiVersion"] == "ray.io/v1"


@pytest.mark.parametrize(("which", "spec"), _cluster_specs())
def test_kuberay_ray_version_matches_installed_ray(which, spec):
    assert spec["rayVersion"] == ray.__version__


@pytest.mark.parametrize(("which", "spec"), _cluster_specs())
def test_kuberay_head_schedules_no_work(which, spec):
    params = spec["headGroupSpec"]["rayStartParams"]
    # KubeRay wants strings here; an int 0 is rejected by the CRD schema.
    assert params["num-cpus"] == "0"
    assert params["dashboard-host"] == "0.0.0.0"
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["idleTimeoutSeconds"] > 0


@pytest.mark.parametrize(("which", "spec"), _cluster_specs())
def test_kuberay_gpu_group_is_guaranteed_one_gpu(which, spec):
    (gpu,) = [g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu"]
    assert 0 == gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    assert gpu["maxReplicas"] >= 1
    pod = gpu["template"]["spec"]
    (container,) = pod["containers"]
    res = container["resources"]
    assert res["limits"] == res["requests"]  # Guaranteed QoS; Ray sizes itself from limits
    assert str(res["limits"]["nvidia.com/gpu"]) == "1"
    assert {"cpu", "memory"} <= set(res["limits"])
    assert any(
        t["key"] == "nvidia.com/gpu" and t["operator"] == "Exists" for t in pod["tolerations"]
    )


@pytest.mark.parametrize(("which", "spec"), _cluster_specs())
def test_kuberay_pods_share_one_image(which, spec):
    images = {c["image"] for _, _, pod in _pods(spec) for c in pod["containers"]}
    assert len(images) == 1  # Ray and Python must match across the cluster


@pytest.mark.parametrize(("which", "spec"), _cluster_specs())
def test_kuberay_pods_use_shared_volume_as_study_home(which, spec):
    pvc = _one(CLUSTER / "storage.yaml", "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    service = _one(CLUSTER / "mlflow" / "deployment.yaml", "Service")
    tracking = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    for group, _, pod in _pods(spec):
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        env = _env(container)
        home_volume = volumes[mounts[env["STUDY_HOME"]]]
        assert home_volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"], group
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory", group
        assert env["MLFLOW_TRACKING_URI"] == tracking, group
        assert env["STUDY_CACHE"].startswith(env["STUDY_HOME"] + "/"), group


@pytest.mark.parametrize(("which", "spec"), _cluster_specs())
def test_kuberay_env_references_are_defined_before_use(which, spec):
    for group, _, pod in _pods(spec):
        for container in pod["containers"]:
            defined: set[str] = set()
            for entry in container.get("env", []):
                for ref in K8S_VAR_REF.findall(entry.get("value", "")):
                    # Kubernetes leaves an unknown or later-defined $(NAME) unexpanded.
                    assert ref in defined, f"{group}: {entry['name']} uses $({ref}) too early"
                defined.add(entry["name"])


def test_kuberay_rayjob_runs_the_study_on_the_raycluster_spec():
    job = _one(CLUSTER / "rayjob.study.yaml", "RayJob")["spec"]
    cluster = _one(CLUSTER / "raycluster.gpu.yaml", "RayCluster")["spec"]
    assert job["rayClusterSpec"] == cluster
    assert job["entrypoint"].startswith("python -m study run ")
    assert job["entrypoint"].endswith("search_spaces/phase-wm.yaml")
    assert job["shutdownAfterJobFinishes"] is True
    assert job["ttlSecondsAfterFinished"] > 0 and job["activeDeadlineSeconds"] > 0
    assert job["backoffLimit"] == 0
    assert yaml.safe_load(job["runtimeEnvYAML"])["env_vars"]["PYTHONUNBUFFERED"] == "1"


def test_mlflow_deployment_serves_the_ray_pods():
    docs = _docs(CLUSTER / "mlflow" / "deployment.yaml")
    (service,) = [d for d in docs if d["kind"] == "Service"]
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
    assert args["backend-store-uri"].startswith("postgresql://")
    assert args["host"] == "0.0.0.0"
    assert str(service["spec"]["ports"][0]["port"]) == args["port"]
    name = service["metadata"]["name"]
    assert f"{name}:{args['port']}" in args["allowed-hosts"].split(",")
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert any(args["artifacts-destination"].startswith(m + "/") for m in mounts)
    env_names = {e["name"] for e in container["env"]}
    for arg in container["args"]:
        assert set(K8S_VAR_REF.findall(arg)) <= env_names


def test_postgres_statefulset_behind_its_service():
    docs = _docs(CLUSTER / "mlflow" / "postgres.yaml")
    (service,) = [d for d in docs if d["kind"] == "Service"]
    (sts,) = [d for d in docs if d["kind"] == "StatefulSet"]
    assert (
        service["spec"]["selector"].items()
        <= sts["spec"]["template"]["metadata"]["labels"].items()
    )
    # The Optuna URL on the Ray head names this Service and the database the init script makes.
    head = _cluster_specs()[0][1]["headGroupSpec"]["template"]["spec"]["containers"][0]
    storage = _env(head)["STUDY_OPTUNA_STORAGE"]
    assert f"@{service['metadata']['name']}:5432/optuna" in storage
    init = [d for d in docs if d["kind"] == "ConfigMap"][0]["data"]
    assert any("CREATE DATABASE optuna" in sql for sql in init.values())


# --- ray up configs ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RAY_UP_FILES)
def test_ray_up_config_passes_ray_schema(name):
    raw = yaml.safe_load((CLUSTER / name).read_text())
    validate_config(prepare_config(copy.deepcopy(raw)))  # what `ray up` does first


@pytest.mark.parametrize("name", RAY_UP_FILES)
def test_ray_up_schema_check_rejects_unknown_field(name):
    # Control: the check above has teeth (the schema forbids extra top-level keys).
    raw = yaml.safe_load((CLUSTER / name).read_text())
    raw["max_wrokers"] = 2
    with pytest.raises(jsonschema.ValidationError, match="max_wrokers"):
        validate_config(prepare_config(raw))


@pytest.mark.parametrize("name", RAY_UP_FILES)
def test_ray_up_commands_are_valid_bash(name):
    raw = yaml.safe_load((CLUSTER / name).read_text())
    keys = [k for k in raw if k.endswith("_commands")]
    assert "head_start_ray_commands" in keys and "worker_start_ray_commands" in keys
    for key in keys:
        for cmd in raw[key]:
            proc = subprocess.run(["bash", "-n", "-c", cmd], capture_output=True, text=True)
            assert proc.returncode == 0, f"{key}: {proc.stderr}"


def test_ray_up_aws_head_has_no_cpus_and_gpu_workers():
    cfg = prepare_config(yaml.safe_load((CLUSTER / "ray-up.aws-gpu.yaml").read_text()))
    types = cfg["available_node_types"]
    assert types[cfg["head_node_type"]]["resources"] == {"CPU": 0}
    gpu = types["gpu_worker"]
    assert gpu["resources"] == {"CPU": 8, "GPU": 1}
    assert gpu["min_workers"] == 0 < gpu["max_workers"] <= cfg["max_workers"]
    kuberay_image = _cluster_specs()[0][1]["headGroupSpec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    assert cfg["docker"]["image"] == kuberay_image


def test_ray_up_onprem_is_manual_local_cluster():
    raw = yaml.safe_load((CLUSTER / "ray-up.onprem.yaml").read_text())
    provider = raw["provider"]
    assert provider["type"] == "local" and provider["head_ip"] and provider["worker_ips"]
    head_start = " ".join(raw["head_start_ray_commands"])
    assert "--num-cpus=0" in head_start and "--head" in head_start


# --- Dockerfiles ---------------------------------------------------------------------------------


def _dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def _dockerfile_args(path: Path) -> dict[str, str]:
    return dict(rest.split("=", 1) for word, rest in _dockerfile(path) if word == "ARG")


def test_dockerfile_base_matches_ray_and_python():
    froms = [rest for word, rest in _dockerfile(CLUSTER / "Dockerfile") if word == "FROM"]
    assert froms == [f"rayproject/ray:{ray.__version__}-{PY_TAG}-gpu"]


def test_dockerfile_torch_pin_within_pyproject_bounds():
    pinned = Version(_dockerfile_args(CLUSTER / "Dockerfile")["TORCH_VERSION"])
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (torch_req,) = [d for d in deps if re.match(r"torch\b", d)]
    assert pinned in SpecifierSet(torch_req.removeprefix("torch"))
    assert pinned.release[:2] == Version(torch.__version__).release[:2]


def test_dockerfile_never_uses_a_pip_constraint_file():
    # The ray image's requirements_compiled.txt pins CPU torch (docs/stack.md §5.3).
    runs = [rest for word, rest in _dockerfile(CLUSTER / "Dockerfile") if word == "RUN"]
    installs = [c.strip() for r in runs for c in re.split(r"&&|;", r) if "pip install" in c]
    assert any("torch==" in c for c in installs)
    for cmd in installs:
        assert "requirements_compiled" not in cmd
        assert not re.search(r"\s(-c|--constraint)(\s|=)", cmd)
        # An inherited PIP_CONSTRAINT would apply silently, so each pip call clears it.
        assert cmd.startswith("PIP_CONSTRAINT= pip install")


def test_mlflow_dockerfile_matches_installed_mlflow():
    path = CLUSTER / "mlflow" / "Dockerfile"
    froms = [rest for word, rest in _dockerfile(path) if word == "FROM"]
    assert froms == [f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"]
    assert _dockerfile_args(path)["MLFLOW_VERSION"] == mlflow.__version__


# --- local-up.sh / local-down.sh without starting anything ---------------------------------------


@pytest.mark.parametrize("script", [LOCAL_UP, LOCAL_DOWN], ids=lambda p: p.name)
def test_local_script_is_valid_bash_with_help(script):
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    proc = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, env=_script_env(), timeout=30
    )
    assert proc.returncode == 0 and "Usage" in proc.stdout


def test_local_up_without_venv_fails_clearly(tmp_path):
    copy_dir = tmp_path / "repo" / "cluster"
    copy_dir.mkdir(parents=True)
    shutil.copy2(LOCAL_UP, copy_dir)
    proc = subprocess.run(
        [str(copy_dir / "local-up.sh")],
        capture_output=True,
        text=True,
        env=_script_env(STUDY_HOME=str(tmp_path / "home")),
        timeout=30,
    )
    assert proc.returncode == 1
    assert "make setup" in proc.stderr and str(tmp_path / "repo" / ".venv") in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-cpus", "two"], "--num-cpus must be an integer"),
        (["--ray-port", "70000"], "--ray-port must be an integer in [1, 65535]"),
        (["--ray-port", "40001", "--mlflow-port", "40001"], "the five ports must differ"),
        (["--bogus"], "unknown option '--bogus'"),
        (["--study-home"], "option --study-home needs a value"),
    ],
)
def test_local_up_rejects_bad_options(tmp_path, args, message):
    proc = subprocess.run(
        [str(LOCAL_UP), *args],
        capture_output=True,
        text=True,
        env=_script_env(STUDY_HOME=str(tmp_path / "home")),
        timeout=30,
    )
    assert proc.returncode == 2
    assert message in proc.stderr


@pytest.mark.parametrize(
    ("variables", "deprecated"),
    [
        ({"STUDY_RAY_PORT": "70000"}, False),
        ({"MISTUDY_RAY_PORT": "70000"}, True),  # the old name still works, with one line
        ({"STUDY_RAY_PORT": "70000", "MISTUDY_RAY_PORT": "6379"}, False),  # the new name wins
    ],
)
def test_local_up_reads_its_options_from_study_variables(tmp_path, variables, deprecated):
    env = {
        k: v
        for k, v in _script_env(STUDY_HOME=str(tmp_path / "home")).items()
        if not k.endswith("STUDY_RAY_PORT")
    }
    proc = subprocess.run(
        [str(LOCAL_UP)], capture_output=True, text=True, env={**env, **variables}, timeout=30
    )
    assert proc.returncode == 2
    assert "--ray-port must be an integer in [1, 65535], but got '70000'" in proc.stderr
    notice = "MISTUDY_RAY_PORT is deprecated; set STUDY_RAY_PORT instead."
    assert proc.stderr.count(notice) == (1 if deprecated else 0), proc.stderr


@pytest.mark.parametrize(
    ("name", "deprecated"), [("STUDY_STOP_GRACE", False), ("MISTUDY_STOP_GRACE", True)]
)
def test_local_down_reads_the_grace_from_study_variables(tmp_path, name, deprecated):
    env = {k: v for k, v in _script_env().items() if not k.endswith("STUDY_STOP_GRACE")}
    proc = subprocess.run(
        [str(LOCAL_DOWN), "--study-home", str(tmp_path / "home")],
        capture_output=True,
        text=True,
        env={**env, name: "soon"},
        timeout=30,
    )
    assert proc.returncode == 2
    assert "--grace must be a whole number of seconds, but got 'soon'" in proc.stderr
    notice = "MISTUDY_STOP_GRACE is deprecated; set STUDY_STOP_GRACE instead."
    assert proc.stderr.count(notice) == (1 if deprecated else 0), proc.stderr


def test_local_up_refuses_a_busy_port(tmp_path):
    home = tmp_path / "home"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [
                str(LOCAL_UP),
                "--mlflow-port",
                str(port),
                "--ray-port",
                str(_free_port()),
                "--dashboard-port",
                str(_free_port()),
                "--client-port",
                str(_free_port()),
                "--agent-port",
                str(_free_port()),
            ],
            capture_output=True,
            text=True,
            env=_script_env(STUDY_HOME=str(home)),
            timeout=60,
        )
    assert proc.returncode == 1
    assert f"already listens on port(s) {port};" in proc.stderr
    assert not list((home / "run").glob("*.pid"))  # refused before starting anything


def test_local_down_without_state_does_nothing(tmp_path):
    (tmp_path / "home").mkdir()
    proc = subprocess.run(
        [str(LOCAL_DOWN), "--study-home", str(tmp_path / "home")],
        capture_output=True,
        text=True,
        env=_script_env(),
        timeout=30,
    )
    assert proc.returncode == 0 and "nothing to stop" in proc.stderr


# --- local-up.sh / local-down.sh for real --------------------------------------------------------


def _get(url: str, token: str | None = None) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with opener.open(request, timeout=10) as r:
        assert r.status == 200
        return r.read()


def _listening(pid: int) -> list:
    """The listening inet sockets of a process (none if it is gone)."""
    import psutil

    try:
        return [
            c
            for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


@pytest.mark.cluster
@pytest.mark.slow
def test_local_up_then_down_serves_and_cleans_up(local_cluster):
    up, home, ports, env = (local_cluster[k] for k in ("up", "home", "ports", "env"))
    assert up.returncode == 0, up.stderr

    # stdout is exactly the four exports, parseable by a shell and by a test.
    exports = dict(re.findall(r"^export (\w+)=(\S+)$", up.stdout, flags=re.M))
    assert exports == {
        "RAY_ADDRESS": f"http://127.0.0.1:{ports['dashboard']}",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
        "STUDY_HOME": str(home.resolve()),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(home.resolve() / "run" / "ray_auth_token"),
    }
    token = home / "run" / "ray_auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text().strip()) == 64
    assert (home / "run" / "env.sh").read_text() == up.stdout

    version = json.loads(_get(f"{exports['RAY_ADDRESS']}/api/version", token.read_text().strip()))
    assert version["ray_version"] == ray.__version__
    status = subprocess.run(
        [
            str(Path(sys.executable).parent / "ray"),
            "status",
            "--address",
            f"127.0.0.1:{ports['ray']}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    assert "1.0 CPU" in status.stdout  # --num-cpus 1 reached the head
    assert _get(f"{exports['MLFLOW_TRACKING_URI']}/health").strip() == b"OK"
    experiments = json.loads(
        _get(f"{exports['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/experiments/search?max_results=5")
    )
    assert [e["name"] for e in experiments["experiments"]] == ["Default"]
    assert (home / "mlflow.db").is_file()

    sids = {f.stem: int(f.read_text()) for f in (home / "run").glob("*.pid")}
    assert set(sids) == {"ray", "mlflow"}
    assert all(_session_pids(sid) for sid in sids.values())
    # the HTTP endpoints listen on loopback only (GCS, raylet and the client server bind every
    # interface in Ray 2.60 whatever the flags: the token guards them)
    listening = {
        (c.laddr.ip, c.laddr.port)
        for sid in sids.values()
        for pid in _session_pids(sid)
        for c in _listening(pid)
    }
    for port in (ports["dashboard"], ports["mlflow"]):
        hosts = {ip for ip, p in listening if p == port}
        assert hosts and hosts <= {"127.0.0.1", "::1", "::ffff:127.0.0.1"}, (port, hosts)
    # token auth: the jobs API refuses a request without the token
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as refused:
        _get(f"{exports['RAY_ADDRESS']}/api/jobs/")
    assert refused.value.code == 401

    down = subprocess.run(
        [str(LOCAL_DOWN), "--study-home", str(home)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert down.returncode == 0, down.stderr
    assert not [sid for sid in sids.values() if _session_pids(sid)]
    deadline = time.monotonic() + 10  # the kernel may hold a socket a moment after exit
    while [p for p in ports.values() if _port_in_use(p)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in ports.values() if _port_in_use(p)]
    assert not list((home / "run").glob("*.pid"))


# --- security: token auth, network policies, no world-writable folders ---------------------------


@pytest.mark.parametrize(("which", "spec"), _cluster_specs(), ids=lambda x: str(x)[:20])
def test_kuberay_token_auth_is_on(which, spec):
    assert spec["authOptions"] == {"mode": "token"}


def _policies() -> dict[str, dict]:
    docs = _docs(CLUSTER / "networkpolicy.yaml")
    assert all(d["kind"] == "NetworkPolicy" for d in docs)
    return {d["metadata"]["name"]: d["spec"] for d in docs}


def _peers(policy: dict) -> list[dict]:
    return [peer for rule in policy["ingress"] for peer in rule["from"]]


def test_networkpolicy_denies_ingress_by_default():
    deny = _policies()["mistudy-default-deny-ingress"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}


def test_networkpolicy_admits_only_ray_pods_to_mlflow_and_selects_the_real_pods():
    policies = _policies()
    mlflow = policies["mistudy-mlflow"]
    deploy = [
        d for d in _docs(CLUSTER / "mlflow" / "deployment.yaml") if d["kind"] == "Deployment"
    ][0]
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert mlflow["podSelector"]["matchLabels"].items() <= labels.items()
    assert _peers(mlflow) == [{"podSelector": {"matchLabels": {"ray.io/is-ray-node": "yes"}}}]
    assert [p["port"] for r in mlflow["ingress"] for p in r["ports"]] == [5000]
    sts = [d for d in _docs(CLUSTER / "mlflow" / "postgres.yaml") if d["kind"] == "StatefulSet"][0]
    pg = policies["mistudy-postgres"]
    assert (
        pg["podSelector"]["matchLabels"].items()
        <= sts["spec"]["template"]["metadata"]["labels"].items()
    )
    assert {tuple(p["podSelector"]["matchLabels"].items())[0] for p in _peers(pg)} == {
        ("app.kubernetes.io/name", "mistudy-mlflow"),
        ("ray.io/node-type", "head"),
    }
    # no rule anywhere admits every namespace
    for policy in policies.values():
        for peer in _peers(policy) if "ingress" in policy else []:
            assert peer.get("namespaceSelector") != {}


@pytest.mark.parametrize("name", RAY_UP_FILES)
def test_ray_up_starts_every_node_with_token_auth(name):
    cfg = _docs(CLUSTER / name)[0]
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = " ".join(c for c in cfg[key] if "ray start" in c)
        assert "RAY_AUTH_MODE=token" in start and "RAY_AUTH_TOKEN_PATH=" in start, key
    assert any("ray_auth_token" in c and "umask 077" in c for c in cfg["head_setup_commands"])
    text = (CLUSTER / name).read_text()
    assert not re.search(r"chmod\s+[0-7]?[0-7][0-7][2367]\b", text), "a world-writable folder"
