"""Command line: ``python -m analysis report STUDY [--tracking-uri URI] [--out DIR]``.

Writes the study's self-contained HTML report (PNG and CSV beside it), logs it to the study run and
prints the report's path. Exit codes: 0 done, 2 study or store not found, 1 other bad input.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback


def _report(args: argparse.Namespace) -> int:
    """Write a study's HTML report with phase diagrams, emergence lags and provenance."""
    from analysis.report import build_report

    import numpy as np

    rep = build_report(args.study, tracking_uri=args.tracking_uri, out_dir=args.out,
                       log_to_mlflow=not args.no_log, rng=np.random.default_rng(args.seed))
    for note in rep.notes:
        logging.getLogger("analysis").info("note: %s", note)
    if rep.logged_run_id:
        print(f"Logged to run {rep.logged_run_id} as artifacts report/.", file=sys.stderr)
    print(rep.path)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less log output")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help=_report.__doc__, description=_report.__doc__)
    rep.add_argument("study", help="study name (= MLflow experiment name)")
    rep.add_argument("--tracking-uri", default=None,
                     help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                          "sqlite:///$STUDY_HOME/mlflow.db with STUDY_HOME=./studies)")
    rep.add_argument("--out", default=None,
                     help="output folder (default: $STUDY_HOME/reports/STUDY/)")
    rep.add_argument("--no-log", action="store_true",
                     help="do not log the report as artifacts of the study run")
    rep.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")
    rep.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    rep.set_defaults(func=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    args = _parser().parse_args(argv)
    level = logging.WARNING - 10 * args.verbose + 10 * args.quiet
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from analysis.runs import StudyNotFoundError

    old_umask = os.umask(0o077)  # reports (HTML, PNG, CSV) are the user's alone: 0600 / 0700
    try:
        return args.func(args)
    except StudyNotFoundError as e:
        if args.debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        os.umask(old_umask)


if __name__ == "__main__":
    sys.exit(main())
