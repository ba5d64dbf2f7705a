"""Command line: ``python -m analysis report|timing|calibrate ...``.

``report STUDY [--tracking-uri URI] [--out DIR]`` writes the study's self-contained HTML report
(PNG and CSV beside it), logs it to the study run and prints the report's path. ``timing STUDY``
prints the timing verdict per cell and ordering (function vs Q(|W|), function vs ΔW) with its
power and why, the calibration at the study's design and the median finals per λ; ``timing
--curves FILE --by COL ...`` runs the same pipeline on any curves table (CSV or parquet) and
``--json OUT`` writes one record per cell. ``calibrate`` runs the timing calibration suite on
declared curve models.

Exit codes, as for ``python -m study`` (docs/analysis.md): 0 done; 2 bad input or usage (a study
or store that does not exist, an empty study name, a bad option), one line; 1 a failure at run
time or a bug, one line naming the exception (``--debug`` re-raises it with the traceback);
130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from analysis.timing.calibration import DEFAULT_FUNC, DEFAULT_STRUCT  # NumPy only
from study.contract.outcomes import DEFAULT_RUN, DEFAULT_Z
from study.contract.text import one_line, redact_url


def _study_name(text: str) -> str:
    """The STUDY argument, refused (AnalysisInputError, exit 2) when blank."""
    from analysis.runs import AnalysisInputError  # pandas/MLflow only once a command runs

    if not text.strip():
        raise AnalysisInputError(f"the study name must not be empty, but got {text!r}")
    return text


def _report(args: argparse.Namespace) -> int:
    """Write a study's HTML report: timing verdicts, calibration, phase diagrams, provenance."""
    import numpy as np

    from analysis.report import build_report

    rep = build_report(
        _study_name(args.study),
        tracking_uri=args.tracking_uri,
        out_dir=args.out,
        log_to_mlflow=not args.no_log,
        rng=np.random.default_rng(args.seed),
    )
    for note in rep.notes:
        logging.getLogger("analysis").info("note: %s", note)
    if rep.logged_run_id:
        print(f"Logged to run {rep.logged_run_id} as artifacts report/.", file=sys.stderr)
    print(rep.path)
    return 0


FINAL_COLUMNS = (
    "final.q_func_z",
    "final.q_struct_z",
    "final.q_struct_delta_z",
    "final.nmi_func",
    "final.nmi_struct",
    "final.q_func",
    "final.q_struct",
)
VERDICT_PRINT = (
    "ordering",
    "verdict",
    "n",
    "p_order_bh",
    "p_tost_bh",
    "median_lag_evals",
    "detectable_lead_evals",
    "power",
)
CALIBRATION_PRINT = (
    "ordering",
    "n_seeds",
    "family",
    "scenario",
    "false_ordering",
    "power",
    "co_emergent",
    "never",
)


def _timing(args: argparse.Namespace) -> int:
    """Timing verdicts per cell and ordering, with power and calibration: of a study (STUDY) or
    of any curves table (--curves FILE --by COL ...)."""
    from analysis.runs import AnalysisInputError

    if (args.study is None) == (args.curves is None):
        raise AnalysisInputError(
            "timing: give a STUDY or --curves FILE (one of the two), but got "
            + ("both" if args.study is not None else "neither")
        )
    if args.curves is None and (args.by or args.struct):
        raise AnalysisInputError(
            "timing: --by and --struct apply to --curves FILE; a study's cells are its swept "
            "keys and its structure measures are study.contract.names.TIMING_STRUCTURE"
        )
    if args.n_sim < 0:
        raise AnalysisInputError(f"--n-sim: expected an integer >= 0, but got {args.n_sim}")
    return _timing_curves(args) if args.curves is not None else _timing_study(args)


def _write_json(path: str, obj: object) -> None:
    """Strict JSON (no NaN: the records hold None for a non-finite number)."""
    import json

    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, allow_nan=False)
        fh.write("\n")


def _timing_study(args: argparse.Namespace) -> int:
    """A study's timing verdicts per cell and ordering, the calibration at its design, and the
    median finals per λ."""
    import pandas as pd

    from analysis.emergence import timing_seeds
    from analysis.runs import analysed_seeds, load_study
    from analysis.timing import jsonable, study_calibration, study_verdicts
    from study.contract.params import PARAM_MI_WEIGHT

    data = load_study(_study_name(args.study), args.tracking_uri)
    seeds = analysed_seeds(data)
    timing, excluded = timing_seeds(seeds, require_success=False)  # counted per cell
    by = [PARAM_MI_WEIGHT] if PARAM_MI_WEIGHT in timing else []
    by += [k for k in data.swept if k in timing and k not in by]
    verdicts = study_verdicts(timing, by, curves=data.curves)
    calib = pd.DataFrame()
    if len(verdicts) and args.n_sim > 0 and data.curves is not None and len(data.curves):
        calib = study_calibration(
            data.curves, timing, by, verdicts=verdicts, n_sim=args.n_sim, seed=args.seed
        )
    cols = [c for c in FINAL_COLUMNS if c in seeds]
    lam = PARAM_MI_WEIGHT if PARAM_MI_WEIGHT in seeds else None
    finals = (
        seeds.groupby(lam)[cols].median().reset_index()
        if lam and cols and len(seeds)
        else pd.DataFrame()
    )
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        if len(verdicts):
            print(verdicts[[*by, *VERDICT_PRINT]].to_string(index=False), end="\n\n")
            for r in verdicts.to_dict("records"):
                cell = ", ".join(f"{k}={r[k]}" for k in by)
                print(f"{cell} [{r['ordering']}] {r['verdict']}: {r['why']}")
            print()
        else:
            print("no timing verdicts: no seeds with z-score curves to time\n")
        if len(calib):
            print("calibration at this study's design (rates over simulated cells):")
            print(calib[list(CALIBRATION_PRINT)].to_string(index=False), end="\n\n")
        if len(excluded):
            print(f"left out of the timing: {len(excluded)} seeds ({_reasons(excluded)})\n")
        if len(finals):
            print("median final values per λ:")
            print(finals.to_string(index=False))
    if args.json:
        _write_json(
            args.json,
            jsonable(
                {
                    "by": by,
                    "verdicts": verdicts.to_dict("records"),
                    "calibration": calib.to_dict("records"),
                    "excluded": int(len(excluded)),
                    "finals": finals.to_dict("records"),
                }
            ),
        )
    return 0


def _reasons(excluded) -> str:
    counts = excluded["reason"].value_counts()
    return ", ".join(f"{n} {reason}" for reason, n in counts.items())


def _read_curves(path: str, need: list[str]):
    """The curves table at `path` (CSV or parquet) with the columns `need`, checked: a missing
    or unreadable file, a missing column, a non-numeric curve or a repeated (seed, epoch) is
    an AnalysisInputError naming the file and the column."""
    from pathlib import Path

    import pandas as pd

    from analysis.runs import AnalysisInputError

    p = Path(path)
    if not p.is_file():
        raise AnalysisInputError(f"--curves {path}: no such file")
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise AnalysisInputError(
            f"--curves {path}: expected a .csv or .parquet file, but got {p.suffix or 'none'!r}"
        )
    try:
        table = pd.read_csv(p) if suffix == ".csv" else pd.read_parquet(p)
    except Exception as e:  # an unreadable file is bad input, whatever the reader raises
        raise AnalysisInputError(
            f"--curves {path}: cannot be read as {suffix[1:]} ({type(e).__name__}: {e})"
        ) from None
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise AnalysisInputError(
            f"--curves {path}: column {missing[0]!r} is missing (needed: {', '.join(need)}; "
            f"found: {', '.join(map(str, table.columns))})"
        )
    for col in need[1:4]:  # epoch and the two curves: numbers (a curve may have gaps)
        num = pd.to_numeric(table[col], errors="coerce")
        bad = num.isna() & (table[col].notna() | (col == "epoch"))
        if bad.any():
            raise AnalysisInputError(
                f"--curves {path}: column {col!r} must hold numbers, but holds "
                f"{table[col][bad].iloc[0]!r}"
            )
        table[col] = num.astype(float)
    keys = [k for k in ("trial_id", "seed") if k in table.columns] + need[4:] + ["epoch"]
    dup = table.duplicated(keys)
    if dup.any():
        row = table[dup].iloc[0]
        seed = row["seed"].item() if hasattr(row["seed"], "item") else row["seed"]
        raise AnalysisInputError(
            f"--curves {path}: seed {seed!r} repeats epoch {row['epoch']:g}; each seed "
            f"needs one row per evaluation (is a cell column missing from --by?)"
        )
    return table


def _timing_curves(args: argparse.Namespace) -> int:
    """The whole timing pipeline on a curves table: one JSON record per cell."""
    import pandas as pd

    from analysis.timing import timing_from_curves

    struct = args.struct or "q_struct_z"
    by = list(args.by or [])
    table = _read_curves(args.curves, ["seed", "epoch", "q_func_z", struct, *by])
    records = timing_from_curves(
        table,
        by,
        struct=struct,
        struct_direction=args.struct_direction,
        n_sim=args.n_sim,
        seed=args.seed,
    )
    cols = [
        *by,
        "verdict",
        "n_seeds",
        "p_order_bh",
        "p_tost_bh",
        "median_lag_evals",
        "detectable_lead_evals",
    ]
    shown = pd.DataFrame([{c: r.get(c) for c in cols} for r in records], columns=cols)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(f"function (q_func_z) vs structure ({struct}), {len(records)} cells:")
        print(shown.to_string(index=False))
        for r in records:
            cal = r.get("calibration") or {}
            cell = ", ".join(f"{k}={r[k]}" for k in by) or "all seeds"
            print(
                f"{cell}: {r['verdict']}; {r['power_note']}"
                + (
                    f"; calibration: false ordering {cal['false_ordering']:.3f} at no lead"
                    if cal and cal.get("false_ordering") is not None
                    else ""
                )
            )
    if args.json:
        _write_json(args.json, records)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    """Run the timing calibration suite on declared curve models and print its rates."""
    import numpy as np

    from analysis.runs import AnalysisInputError
    from analysis.timing import CurveParams, calibration_suite, jsonable
    from analysis.timing.calibration import format_table

    models = {}
    for name in ("func", "struct"):  # the declared models are the input: exit 2 if bad
        vals = {k: getattr(args, f"{name}_{k}") for k in ("amplitude", "width", "sd", "rho")}
        try:
            models[name] = CurveParams(**vals)
        except ValueError:
            raise AnalysisInputError(
                f"--{name}-amplitude/--{name}-width/--{name}-sd/--{name}-rho: the {name} model "
                f"must have a finite amplitude, width > 0, a finite sd >= 0 and 0 <= rho < 1, "
                f"but got {', '.join(f'{k}={v}' for k, v in vals.items())}"
            ) from None
    if args.eval_every <= 0 or args.epochs // args.eval_every < args.run + 2:
        raise AnalysisInputError(
            f"--epochs/--eval-every: expected more than --run + 1 = "
            f"{args.run + 1} evaluations, but got --epochs {args.epochs} "
            f"--eval-every {args.eval_every}"
        )
    for flag in ("seeds", "cells", "family"):
        if getattr(args, flag) < 1:
            raise AnalysisInputError(
                f"--{flag}: expected an integer >= 1, but got {getattr(args, flag)}"
            )
    epochs = np.arange(0, args.epochs + 1, args.eval_every, dtype=float)
    results = calibration_suite(
        models["func"],
        models["struct"],
        rng=np.random.default_rng(args.seed),
        epochs=epochs,
        n_seeds=args.seeds,
        n_cells=args.cells,
        family=args.family,
        threshold=True,
        onset_kwargs={"threshold": args.z, "run": args.run},
    )
    print(format_table(results))
    if args.json:
        _write_json(args.json, jsonable([r.to_dict() for r in results]))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analysis", description=__doc__.splitlines()[0]
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less log output")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help=_report.__doc__, description=_report.__doc__)
    rep.add_argument("study", help="study name (= MLflow experiment name)")
    rep.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
        "sqlite:///$STUDY_HOME/mlflow.db with STUDY_HOME=./studies)",
    )
    rep.add_argument(
        "--out", default=None, help="output folder (default: $STUDY_HOME/reports/STUDY/)"
    )
    rep.add_argument(
        "--no-log", action="store_true", help="do not log the report as artifacts of the study run"
    )
    rep.add_argument(
        "--seed", type=int, default=0, help="seed of the calibration's synthetic curves"
    )
    rep.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    rep.set_defaults(func=_report)

    tim = sub.add_parser("timing", help=_timing.__doc__, description=_timing.__doc__)
    tim.add_argument(
        "study", nargs="?", default=None, help="study name (= MLflow experiment name)"
    )
    tim.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (as for report)")
    tim.add_argument(
        "--curves",
        default=None,
        metavar="FILE",
        help="a curves table (CSV or parquet: seed, epoch, q_func_z, the structure column and "
        "the --by columns) instead of a study",
    )
    tim.add_argument(
        "--by", nargs="+", default=None, metavar="COL", help="the cell columns of --curves"
    )
    tim.add_argument(
        "--struct", default=None, help="the structure column of --curves (default q_struct_z)"
    )
    tim.add_argument(
        "--struct-direction",
        type=int,
        choices=(1, -1),
        default=1,
        help="+1 when the structure column rises as structure forms, -1 when it falls",
    )
    tim.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    tim.add_argument(
        "--n-sim",
        type=int,
        default=100,
        help="simulated cells per calibration scenario (0: no calibration)",
    )
    tim.add_argument(
        "--seed", type=int, default=0, help="seed of the calibration's synthetic curves"
    )
    tim.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    tim.set_defaults(func=_timing)

    cal = sub.add_parser("calibrate", help=_calibrate.__doc__, description=_calibrate.__doc__)
    cal.add_argument("--epochs", type=int, default=1000, help="run length in epochs")
    cal.add_argument("--eval-every", type=int, default=25, help="epochs between evaluations")
    cal.add_argument("--seeds", type=int, default=8, help="seeds per simulated cell")
    cal.add_argument("--cells", type=int, default=200, help="simulated cells per scenario")
    cal.add_argument("--family", type=int, default=1, help="cells per BH family")
    for name, model in (("func", DEFAULT_FUNC), ("struct", DEFAULT_STRUCT)):
        metric = "q_func_z" if name == "func" else "q_struct_z"
        amp, width, sd, rho = model.amplitude, model.width, model.sd, model.rho
        cal.add_argument(
            f"--{name}-amplitude", type=float, default=amp, help=f"{metric} rise (z units)"
        )
        cal.add_argument(
            f"--{name}-width",
            type=float,
            default=width,
            help=f"{metric} logistic scale (evaluations)",
        )
        cal.add_argument(f"--{name}-sd", type=float, default=sd, help=f"{metric} noise sd")
        cal.add_argument(
            f"--{name}-rho", type=float, default=rho, help=f"{metric} lag-1 autocorr."
        )
    cal.add_argument(
        "--z", type=float, default=DEFAULT_Z, help="detection threshold (emergence.z)"
    )
    cal.add_argument("--run", type=int, default=DEFAULT_RUN, help="detection run (emergence.run)")
    cal.add_argument("--json", default=None, help="also write the rates to this JSON file")
    cal.add_argument("--seed", type=int, default=0, help="seed of the synthetic curves")
    cal.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    cal.set_defaults(func=_calibrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    args = _parser().parse_args(argv)
    level = logging.WARNING - 10 * args.verbose + 10 * args.quiet
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from analysis.runs import AnalysisInputError  # pandas/MLflow only once a command runs

    old_umask = os.umask(0o077)  # reports (HTML, PNG, CSV) are the user's alone: 0600 / 0700
    try:
        return args.func(args)
    except AnalysisInputError as e:  # raised where the input is checked: study name, store
        if args.debug:
            traceback.print_exc()
        print(f"error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        # A failure at run time or a bug: status 1 (never 2, so a bug is not read as bad
        # input), its type named, credentials of a tracking URI redacted; --debug re-raises
        # with the traceback.
        if args.debug:
            raise
        print(
            f"error: {type(e).__name__}: {one_line(redact_url(str(e)))} (run with --debug "
            f"for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        os.umask(old_umask)


if __name__ == "__main__":
    sys.exit(main())
