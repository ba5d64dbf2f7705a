"""Publish a timing study's small result files into a docs/results folder.

    STUDY_HOME=... python docs/results/publish_timing.py STUDY OUT_DIR [--n-sim N]

From the study in MLflow (``analysis.load_study``): ``curves.parquet`` (one row per trial, seed
and evaluation, with the swept keys as columns; what any later analysis re-reads),
``seeds.csv`` (per-seed outcomes; the timing onsets recomputed by the current rule when the
stored ones are older), then the report (``python -m analysis report``: ``findings.txt``, the
verdict matrix, the timing, claims, calibration, MI audit and curve files it writes) and
``python -m analysis timing`` (``timing.txt``, ``timing.json``, ``timing_verdicts.csv``,
``calibration.csv``, ``finals_by_lambda.csv``). Prints the wall time of each step;
``publish.txt`` in OUT_DIR keeps the commit, the commands and those times.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
REPORT_FILES = (
    "findings.txt",
    "verdict_matrix.png",
    "claims_by_cell.csv",
    "timing_by_ordering.csv",
    "mi_audit.csv",
    "curves.png",
    "onsets.png",
)


def _run(cmd: list[str], log: list[str]) -> str:
    t0 = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {out.stderr.strip()[-2000:]}")
    log.append(f"`{' '.join(cmd[1:])}`: {time.time() - t0:.0f} s")
    print(log[-1], flush=True)
    return out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study")
    ap.add_argument("out", type=Path)
    ap.add_argument("--n-sim", type=int, default=100)
    args = ap.parse_args()
    import analysis
    from analysis.timing.study_verdicts import with_onsets

    args.out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(  # the code that runs: HEAD at the start
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    log: list[str] = []
    t0 = time.time()
    data = analysis.load_study(args.study)
    keys = [c for c in data.trials.columns if c.startswith(("mi.", "partition.", "network."))]
    keys = [k for k in keys if data.trials[k].nunique() > 1] or ["mi.weight"]
    meta = data.trials.set_index("trial_id")[keys]
    curves = data.curves.join(meta, on="trial_id")
    curves = curves[[*keys, *(c for c in curves.columns if c not in keys)]]
    curves.sort_values([*keys, "seed", "epoch"], kind="stable").to_parquet(
        args.out / "curves.parquet", index=False
    )
    seeds = with_onsets(data.seeds, data.curves)
    seeds.to_csv(args.out / "seeds.csv", index=False)
    log.append(f"curves.parquet ({len(curves)} rows) and seeds.csv: {time.time() - t0:.0f} s")
    print(log[-1], flush=True)
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        _run([py, "-m", "analysis", "report", args.study, "--out", tmp], log)
        for name in REPORT_FILES:
            src = Path(tmp) / name
            if src.exists():
                shutil.copy(src, args.out / name)
        for page in Path(tmp).glob("*.html"):  # the findings block, one sentence a line
            found = re.search(r'<ul class="findings" id="findings">(.*?)</ul>', page.read_text())
            if found:
                items = re.findall(r"<li>(.*?)</li>", found.group(1), flags=re.S)
                (args.out / "findings.txt").write_text(
                    "\n".join(html.unescape(i) for i in items) + "\n"
                )
    js = args.out / "timing.json"
    text = _run([py, "-m", "analysis", "timing", args.study, "--json", str(js)], log)
    (args.out / "timing.txt").write_text(text)
    rec = json.loads(js.read_text())
    for key, name in (
        ("verdicts", "timing_verdicts.csv"),
        ("calibration", "calibration.csv"),
        ("finals", "finals_by_lambda.csv"),
    ):
        if rec.get(key):
            pd.DataFrame(rec[key]).to_csv(args.out / name, index=False)
    (args.out / "publish.txt").write_text(
        f"commit {commit}\n"
        f"command: STUDY_HOME=... python docs/results/publish_timing.py {args.study} {args.out}\n"
        + "\n".join(log)
        + "\n"
    )


if __name__ == "__main__":
    main()
