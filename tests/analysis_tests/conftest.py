"""Fixture studies written into a real SQLite MLflow store exactly per docs/run-data.md.

The grid study has noisy-sigmoid curves with KNOWN onsets: q_func (and its z-score q_func_z) rises
first and q_struct (q_struct_z) follows by a known per-seed lag (median 150 epochs); λ = 0 never
rises; accuracy drops at λ = 0.3. The fixture has no NMI curves (a study that did not measure
them). Its seeds.parquet predates the onsets, so the reader recomputes the outcomes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.contract.outcomes import chance_modularity

GRID_NAME = "fixture-grid"
RUNNING_NAME = "fixture-running"
EMPTY_NAME = "fixture-empty"
N_HIDDEN = 24
EPOCHS = np.arange(0, 601, 25, dtype=float)  # 25 evaluations, eval_every 25
LAMBDAS = (0.0, 0.1, 0.3)
GROUPS = (2, 3)
SEEDS_PER_K = {2: 4, 3: 3}
LAG_PATTERN = (125.0, 150.0, 175.0, 150.0)  # per seed; over all emerged seeds the median is 150
KNOWN_MEDIAN_LAG = 150.0
FINAL_ACCURACY = {0.0: 0.95, 0.1: 0.95, 0.3: 0.80}  # accuracy starts to drop at λ = 0.3
Q_FUNC_PLATEAU = 0.35  # above chance
Q_STRUCT_PLATEAU = {0.1: 0.15, 0.3: 0.18}  # λ = 0.1 seeds end differentiated (> 0.1)
NOISE = 0.004
Z_PLATEAU = 10.0  # the z-scores rise from 0 to this; onset rule z >= 3 for 3 evaluations
Z_NOISE = 0.3  # treated seeds' z-score noise; λ = 0 z-scores are N(0, Z_NULL_NOISE²)
Z_NULL_NOISE = 0.8
WIDTH = 6.0  # logistic scale (epochs): the rise sits between two evaluations, never on one
DIVERGE_FROM = 400.0  # the diverged trial's curves are NaN from this epoch on
METRICS = (
    "task_loss",
    "accuracy",
    "mi",
    "mi_gauss",
    "q_func",
    "q_struct",
    "q_func_z",
    "q_struct_z",
    "d_out",
)


def sigmoid(
    epochs: np.ndarray, onset: float, amplitude: float, base: float = 0.0, width: float = WIDTH
) -> np.ndarray:
    """A logistic rise whose half-rise epoch on a 25-epoch grid is exactly `onset`.

    Centred 12.5 epochs before `onset`, so the grid point `onset` is well above the half level and
    the one before it well below (logistic(±12.5/6) = 0.89 / 0.11).
    """
    return base + amplitude / (1.0 + np.exp(-(epochs - (onset - 12.5)) / width))


@dataclass(frozen=True)
class FixtureStudy:
    """Where the fixture studies live and what they are known to contain."""

    tracking_uri: str
    root: Path
    name: str
    running_name: str
    empty_name: str
    design: pd.DataFrame  # one row per (trial_id, seed): mi.weight, partition.groups, t_func, ...
    orphan_run_id: str
    diverged_trial_id: str
    failed_trial_id: str
    study_run_id: str
    known_median_lag: float = KNOWN_MEDIAN_LAG  # over every seed where both metrics emerged


def _trial_curves(
    lam: float, k: int, n_seeds: int, rng: np.random.Generator, diverged: bool
) -> tuple[pd.DataFrame, list[dict]]:
    """curves.parquet rows and the known per-seed design of one trial."""
    chance = chance_modularity(N_HIDDEN, k)
    rows, design = [], []
    for s in range(n_seeds):
        t_func = 100.0 + 25.0 * s
        lag = LAG_PATTERN[s]
        t_struct = t_func + lag
        noise = lambda: rng.normal(0.0, NOISE, EPOCHS.size)  # noqa: E731
        if lam > 0:
            q_func = sigmoid(EPOCHS, t_func, Q_FUNC_PLATEAU, chance) + noise()
            q_struct = sigmoid(EPOCHS, t_struct, Q_STRUCT_PLATEAU[lam], chance) + noise()
            z_func = sigmoid(EPOCHS, t_func, Z_PLATEAU) + rng.normal(0, Z_NOISE, EPOCHS.size)
            z_struct = sigmoid(EPOCHS, t_struct, Z_PLATEAU) + rng.normal(0, Z_NOISE, EPOCHS.size)
        else:
            q_func = chance + noise()
            q_struct = chance + noise()
            z_func = rng.normal(0.0, Z_NULL_NOISE, EPOCHS.size)
            z_struct = rng.normal(0.0, Z_NULL_NOISE, EPOCHS.size)
        acc = sigmoid(EPOCHS, 75.0, FINAL_ACCURACY[lam] - 0.5, 0.5) + noise()
        frame = pd.DataFrame(
            {
                "seed": s,
                "seed_value": 1000 + s,
                "epoch": EPOCHS.astype(int),
                "task_loss": 1.0 - acc,
                "accuracy": acc,
                "mi": 1.5 - 3 * lam + noise(),
                "mi_gauss": 1.0 - 2 * lam + noise(),
                "q_func": q_func,
                "q_struct": q_struct,
                "q_func_z": z_func,
                "q_struct_z": z_struct,
                "d_out": 0.5 * lam + noise(),
            }
        )
        if diverged:
            frame.loc[frame["epoch"] >= DIVERGE_FROM, list(METRICS)] = np.nan
        rows.append(frame)
        emerged = lam > 0
        design.append(
            {
                "seed": s,
                "seed_value": 1000 + s,
                "q_chance": chance,
                "t_func": t_func if emerged else math.nan,
                "t_struct": t_struct if emerged else math.nan,
                "lag": lag if emerged else math.nan,
                "func_emerged": emerged,
                "struct_emerged": emerged,
            }
        )
    return pd.concat(rows, ignore_index=True), design


def _seeds_parquet(curves: pd.DataFrame, design: list[dict]) -> pd.DataFrame:
    """seeds.parquet as `study` writes it: finals = mean of the last 3 finite evaluations."""
    out = []
    for d in design:
        c = curves[curves["seed"] == d["seed"]]
        row = {"seed": d["seed"], "seed_value": d["seed_value"]}
        for m in METRICS:
            v = c[m].to_numpy(float)
            v = v[np.isfinite(v)]
            row[f"final.{m}"] = float(v[-3:].mean())
        row["success"] = row["final.accuracy"] > 0.9
        row["differentiated"] = row["success"] and row["final.q_struct"] > 0.1
        row |= {k: d[k] for k in ("t_func", "t_struct", "lag", "func_emerged", "struct_emerged")}
        out.append(row)
    return pd.DataFrame(out)


class _Writer:
    """The few MLflow calls a study's tracking makes, against one client."""

    def __init__(self, client, experiment_id: str, tmp: Path):
        self.client, self.experiment_id, self.tmp = client, experiment_id, tmp

    def run(
        self,
        tags: dict[str, str],
        params: dict[str, str] | None = None,
        start_time: int | None = None,
        name: str | None = None,
    ) -> str:
        from mlflow.entities import Param

        run = self.client.create_run(
            self.experiment_id, start_time=start_time, tags=tags, run_name=name
        )
        if params:
            self.client.log_batch(
                run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()]
            )
        return run.info.run_id

    def curves_and_summary(
        self, run_id: str, curves: pd.DataFrame, seeds: pd.DataFrame | None
    ) -> None:
        from mlflow.entities import Metric

        metrics = []
        mean = curves.groupby("epoch")[list(METRICS)].mean()
        for epoch, row in mean.iterrows():
            metrics += [
                Metric(m, float(v), 0, int(epoch)) for m, v in row.items() if np.isfinite(v)
            ]
        if seeds is not None:
            last = int(curves["epoch"].max())
            summary = {f"final.{m}": seeds[f"final.{m}"].median() for m in METRICS}
            summary |= {
                "final.success_rate": seeds["success"].mean(),
                "final.differentiated_rate": seeds["differentiated"].mean(),
                "n_seeds": len(seeds),
                "n_func_emerged": seeds["func_emerged"].sum(),
                "n_struct_emerged": seeds["struct_emerged"].sum(),
                "n_lag_positive": (seeds["lag"] > 0).sum(),
            }
            if seeds["func_emerged"].any():
                summary |= {
                    "t_func": seeds["t_func"].median(),
                    "t_struct": seeds["t_struct"].median(),
                    "lag": seeds["lag"].median(),
                }
            metrics += [Metric(k, float(v), 0, last) for k, v in summary.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[i : i + 1000])
        d = self.tmp / run_id
        d.mkdir(parents=True)
        curves.to_parquet(d / "curves.parquet", index=False)
        self.client.log_artifact(run_id, str(d / "curves.parquet"))
        if seeds is not None:
            seeds.to_parquet(d / "seeds.parquet", index=False)
            self.client.log_artifact(run_id, str(d / "seeds.parquet"))


def _study_tags(name: str, status: str, swept: list[str]) -> dict[str, str]:
    return {
        "study.role": "study",
        "study.name": name,
        "study.status": status,
        "study.task": "working_memory",
        "study.swept": json.dumps(swept),
        "study.objectives": json.dumps([{"metric": "final.q_func", "direction": "maximize"}]),
        "study.git_commit": "0123456789abcdef0123456789abcdef01234567",
        "study.versions": json.dumps(
            {
                "python": "3.11.9",
                "torch": "2.13.0",
                "ray": "2.60.0",
                "optuna": "5.0.0",
                "mlflow": "3.17.2",
                "numpy": "2.4.6",
            }
        ),
    }


def _trial_params(lam: float, k: int, n_seeds: int, base_seed: int) -> dict[str, str]:
    return {
        "task.name": "working_memory",
        "network.kind": "leaky_rnn",
        "network.hidden": N_HIDDEN,
        "partition.groups": k,
        "mi.weight": lam,
        "mi.estimator": "dv",
        "train.epochs": int(EPOCHS[-1]),
        "train.eval_every": 25,
        "train.final_window": 3,
        "seeds": n_seeds,
        "seed": base_seed,
    }


def _write_grid(client, root: Path) -> dict:
    """The grid study: 6 trials over λ × K, one diverged, one failed, one orphaned duplicate."""
    exp = client.create_experiment(GRID_NAME, artifact_location=(root / "artifacts").as_uri())
    w = _Writer(client, exp, root / "staging")
    parent = w.run(
        _study_tags(GRID_NAME, "finished", ["mi.weight", "partition.groups"]),
        name="study",
        start_time=1_000,
    )
    spec = root / "staging" / "spec.yaml"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(
        "name: fixture-grid\ntask: working_memory\nsampler: grid\n"
        "search:\n  mi.weight: [0.0, 0.1, 0.3]\n  partition.groups: [2, 3]\n"
    )
    client.log_artifact(parent, str(spec))
    rng = np.random.default_rng(20260101)
    design, out = [], {}
    t0 = 10_000
    for i, (lam, k) in enumerate([(lam, k) for lam in LAMBDAS for k in GROUPS]):
        trial_id = f"trial_{i:05d}"
        diverged = (lam, k) == (0.3, 3)
        n_seeds = SEEDS_PER_K[k]
        curves, d = _trial_curves(lam, k, n_seeds, rng, diverged)
        seeds = _seeds_parquet(curves, d)
        tags = {
            "study.role": "trial",
            "study.name": GRID_NAME,
            "study.trial_id": trial_id,
            "study.status": "diverged" if diverged else "finished",
            "study.task": "working_memory",
            "mlflow.parentRunId": parent,
            "study.message": (
                "train: MI estimate is not finite at epoch 400 for seed 0 of 3" if diverged else ""
            ),
        }
        if (lam, k) == (0.1, 2):
            # An earlier attempt of the same trial, left open (a Tune restore, docs/stack.md §0.8).
            orphan_tags = dict(tags, **{"study.status": "running"})
            out["orphan_run_id"] = w.run(orphan_tags, _trial_params(lam, k, n_seeds, 7), t0 - 500)
            client.log_metric(out["orphan_run_id"], "q_func", 0.0, step=0)
        run_id = w.run(tags, _trial_params(lam, k, n_seeds, 7), t0 + 100 * i, name=trial_id)
        w.curves_and_summary(run_id, curves, seeds)
        client.set_terminated(run_id, "FAILED" if diverged else "FINISHED")
        if diverged:
            out["diverged_trial_id"] = trial_id
        design += [
            dict(row, trial_id=trial_id, **{"mi.weight": lam, "partition.groups": k}) for row in d
        ]
    failed_id = "trial_00006"
    failed = w.run(
        {
            "study.role": "trial",
            "study.name": GRID_NAME,
            "study.trial_id": failed_id,
            "study.status": "failed",
            "study.task": "working_memory",
            "mlflow.parentRunId": parent,
            "study.message": "RuntimeError: worker died before the first evaluation",
        },
        _trial_params(0.1, 2, 4, 8),
        t0 + 1_000,
        name=failed_id,
    )
    client.set_terminated(failed, "FAILED")
    client.set_terminated(parent, "FINISHED")
    return {
        "design": pd.DataFrame(design),
        "failed_trial_id": failed_id,
        "study_run_id": parent,
        **out,
    }


def _write_running(client, root: Path) -> None:
    """A study still running: one finished trial, one running trial with partial curves."""
    exp = client.create_experiment(
        RUNNING_NAME, artifact_location=(root / "artifacts-running").as_uri()
    )
    w = _Writer(client, exp, root / "staging-running")
    parent = w.run(_study_tags(RUNNING_NAME, "running", ["mi.weight"]), name="study")
    rng = np.random.default_rng(7)
    for i, lam in enumerate((0.0, 0.1)):
        curves, d = _trial_curves(lam, 2, 3, rng, diverged=False)
        running = lam == 0.1
        tags = {
            "study.role": "trial",
            "study.name": RUNNING_NAME,
            "study.trial_id": f"run_{i}",
            "study.status": "running" if running else "finished",
            "study.task": "working_memory",
            "mlflow.parentRunId": parent,
        }
        run_id = w.run(tags, _trial_params(lam, 2, 3, 1), 5_000 + i)
        if running:
            w.curves_and_summary(run_id, curves[curves["epoch"] <= 200], None)
        else:
            w.curves_and_summary(run_id, curves, _seeds_parquet(curves, d))
            client.set_terminated(run_id, "FINISHED")


def _write_empty(client, root: Path) -> None:
    """A study whose parent run exists but no trial has started."""
    exp = client.create_experiment(
        EMPTY_NAME, artifact_location=(root / "artifacts-empty").as_uri()
    )
    _Writer(client, exp, root).run(_study_tags(EMPTY_NAME, "running", ["mi.weight"]), name="study")


@pytest.fixture(scope="session")
def fixture_study(tmp_path_factory: pytest.TempPathFactory) -> FixtureStudy:
    """The three fixture studies in one SQLite store, created once per session."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    grid = _write_grid(client, root)
    _write_running(client, root)
    _write_empty(client, root)
    return FixtureStudy(
        tracking_uri=uri,
        root=root,
        name=GRID_NAME,
        running_name=RUNNING_NAME,
        empty_name=EMPTY_NAME,
        **grid,
    )


@pytest.fixture
def noisy_sigmoid() -> Callable[..., np.ndarray]:
    """`sigmoid` plus Gaussian noise from an explicit generator."""

    def make(epochs, onset, amplitude, *, base=0.0, noise=0.0, rng=None, width=WIDTH):
        x = sigmoid(np.asarray(epochs, float), onset, amplitude, base, width)
        if noise:
            x = x + rng.normal(0.0, noise, x.shape)
        return x

    return make


@pytest.fixture(scope="session")
def grid_report(fixture_study: FixtureStudy, tmp_path_factory: pytest.TempPathFactory):
    """The grid study's report, built once and logged to its study run."""
    from analysis.report import build_report

    out = tmp_path_factory.mktemp("report")
    return build_report(
        fixture_study.name,
        tracking_uri=fixture_study.tracking_uri,
        out_dir=out,
        rng=np.random.default_rng(0),
    )


@dataclass(frozen=True)
class AdaptiveStudy:
    """A 60-trial TPE search over λ, K and the learning rate (adaptive_study.py), its report."""

    tracking_uri: str
    name: str
    n_trials: int
    report: object  # analysis.report.Report
    seconds: dict[str, float]  # how long the search and the report took


@pytest.fixture(scope="session")
def adaptive_report(tmp_path_factory: pytest.TempPathFactory) -> AdaptiveStudy:
    """A real 60-trial TPE search (tiny trials, the real runner, MLflow SQLite) and its report,
    built once per session (a minute or two on 2 cores: slow and browser tests only)."""
    import time

    from adaptive_study import build_adaptive_study

    from analysis.report import build_report

    root = tmp_path_factory.mktemp("adaptive")
    t0 = time.perf_counter()
    uri = build_adaptive_study(root, name="tpe-adaptive", n_trials=60)
    t1 = time.perf_counter()
    report = build_report(
        "tpe-adaptive",
        tracking_uri=uri,
        out_dir=root / "report",
        log_to_mlflow=False,
        rng=np.random.default_rng(0),
    )
    t2 = time.perf_counter()
    return AdaptiveStudy(uri, "tpe-adaptive", 60, report, {"search": t1 - t0, "report": t2 - t1})
