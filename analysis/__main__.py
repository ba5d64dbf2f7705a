"""Command line: ``python -m analysis report|timing|calibrate ...``.

``report STUDY [--tracking-uri URI] [--out DIR]`` writes the study's self-contained HTML report
(PNG and CSV beside it), logs it to the study run and prints the report's path. ``timing STUDY``
prints the timing verdict per λ, the false-emergence rate at λ = 0, the calibration and the
median final z-scores and NMIs per λ (``--json`` writes them too). ``calibrate`` runs the
pipeline's calibration on a declared noise model.

Exit codes, as for ``python -m study`` (docs/analysis.md): 0 done; 2 bad input or usage (a study
or store that does not exist, an empty study name, a bad option), one line; 1 a failure at run
time or a bug, one line naming the exception (``--debug`` re-raises it with the traceback);
130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import traceback

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


def _timing(args: argparse.Namespace) -> int:
    """Print a study's timing verdict per λ, false emergence, calibration, final z-scores/NMIs."""
    import json

    import numpy as np
    import pandas as pd

    from analysis.report import analysed_seeds, findings
    from analysis.runs import load_study
    from study.contract.params import PARAM_MI_WEIGHT

    data = load_study(_study_name(args.study), args.tracking_uri)
    fnd = findings(data, rng=np.random.default_rng(args.seed), importance=False)
    seeds = analysed_seeds(data)
    cols = [c for c in FINAL_COLUMNS if c in seeds]
    by = PARAM_MI_WEIGHT if PARAM_MI_WEIGHT in seeds else None
    finals = (
        seeds.groupby(by)[cols].median().reset_index()
        if by and cols and len(seeds)
        else pd.DataFrame()
    )
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(fnd.text, end="\n\n")
        if len(fnd.verdicts):
            print(fnd.verdicts.to_string(index=False), end="\n\n")
        if len(finals):
            print("median final values per λ:")
            print(finals.to_string(index=False))
    if args.json:
        out = {
            "findings": fnd.text,
            "verdicts": json.loads(fnd.verdicts.to_json(orient="records"))
            if len(fnd.verdicts)
            else [],
            "false_emergence": fnd.false_emergence,
            "calibration": fnd.calibration._asdict() if fnd.calibration else None,
            "finals": json.loads(finals.to_json(orient="records")) if len(finals) else [],
            "excluded": int(len(fnd.excluded)),
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    """Calibrate the onset + test pipeline on a declared noise model and print its rates."""
    import numpy as np

    from analysis.emergence import Noise, calibrate
    from analysis.runs import AnalysisInputError

    for name in ("func", "struct"):  # the declared noise model is the input: exit 2 if bad
        sd, rho = getattr(args, f"{name}_sd"), getattr(args, f"{name}_rho")
        if not (math.isfinite(sd) and sd >= 0 and 0 <= rho < 1):
            raise AnalysisInputError(
                f"--{name}-sd/--{name}-rho: {name} noise must have a "
                f"finite sd >= 0 and 0 <= rho < 1, but got sd={sd}, "
                f"rho={rho}"
            )
    if args.eval_every <= 0 or args.epochs // args.eval_every < args.run + 1:
        raise AnalysisInputError(
            f"--epochs/--eval-every: expected more than --run + 1 = "
            f"{args.run + 1} evaluations, but got --epochs {args.epochs} "
            f"--eval-every {args.eval_every}"
        )
    epochs = np.arange(0, args.epochs + 1, args.eval_every, dtype=float)
    func = Noise(args.func_sd, args.func_rho, 0)
    struct = Noise(args.struct_sd, args.struct_rho, 0)
    cal = calibrate(
        func,
        struct,
        epochs=epochs,
        n_seeds=args.seeds,
        n_cells=args.cells,
        z=args.z,
        run=args.run,
        amplitude=args.amplitude,
        rng=np.random.default_rng(args.seed),
    )
    for k, v in cal._asdict().items():
        print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
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
    tim.add_argument("study", help="study name (= MLflow experiment name)")
    tim.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (as for report)")
    tim.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    tim.add_argument(
        "--seed", type=int, default=0, help="seed of the calibration's synthetic curves"
    )
    tim.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    tim.set_defaults(func=_timing)

    cal = sub.add_parser("calibrate", help=_calibrate.__doc__, description=_calibrate.__doc__)
    cal.add_argument("--epochs", type=int, default=1000, help="run length in epochs")
    cal.add_argument("--eval-every", type=int, default=25, help="epochs between evaluations")
    cal.add_argument("--seeds", type=int, default=8, help="seeds per simulated λ")
    cal.add_argument("--cells", type=int, default=200, help="simulated λ cells")
    cal.add_argument("--func-sd", type=float, default=1.0, help="q_func_z noise sd")
    cal.add_argument("--func-rho", type=float, default=0.0, help="q_func_z lag-1 autocorr.")
    cal.add_argument("--struct-sd", type=float, default=0.3, help="q_struct_z noise sd")
    cal.add_argument("--struct-rho", type=float, default=0.95, help="q_struct_z lag-1 autocorr.")
    cal.add_argument("--amplitude", type=float, default=10.0, help="plateau z of the rise")
    cal.add_argument("--z", type=float, default=DEFAULT_Z, help="onset threshold (emergence.z)")
    cal.add_argument("--run", type=int, default=DEFAULT_RUN, help="onset run (emergence.run)")
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
