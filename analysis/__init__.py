"""Read a study's runs back from MLflow; report when functional and structural modularity emerge.

Importing ``analysis`` or ``analysis.emergence`` loads only NumPy (training code uses
:func:`onset`); the MLflow/pandas/matplotlib parts load on first use of their names below.
"""

from __future__ import annotations

import importlib
from typing import Any

from analysis.emergence import Onset, onset

_LAZY = {
    "LagSummary": "analysis.emergence", "chance_modularity": "analysis.emergence",
    "group_sizes": "analysis.emergence", "lag_summary": "analysis.emergence",
    "lag_table": "analysis.emergence", "rank_correlations": "analysis.emergence",
    "seed_onsets": "analysis.emergence",
    "StudyData": "analysis.runs", "StudyNotFoundError": "analysis.runs",
    "load_study": "analysis.runs",
    "PhaseInfo": "analysis.phase", "phase_info": "analysis.phase",
    "curve_bands_info": "analysis.phase", "pareto_info": "analysis.phase",
    "scatter_info": "analysis.phase",
    "Findings": "analysis.report", "Report": "analysis.report", "build_report": "analysis.report",
    "findings": "analysis.report",
}

__all__ = ["Onset", "onset", *_LAZY]


def __getattr__(name: str) -> Any:
    # PEP 562: keeps `import analysis.emergence` free of mlflow/pandas/matplotlib.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
