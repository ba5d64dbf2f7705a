"""Read a study's runs back from MLflow; judge its claims and when functional and structural
modularity emerge; write its report.

The public face, for scripts and notebooks (docs/analysis.md, "Notebooks"; docs/example.ipynb).
Names load lazily, so ``import analysis`` imports nothing heavy (no pandas, MLflow or
matplotlib until a name is used). No public name is also a submodule's (``analysis.claims`` is
the module of the claims' statistics, ``analysis.claims_by_cell`` the table):

- reading: ``load_study`` (MLflow -> :class:`StudyData`), ``seeds`` (the analysed per-seed
  table), ``study_cells`` (grid points, or bins of λ for an adaptive search);
- the report's tables, each a pandas DataFrame of one loaded study: ``claims_by_cell``,
  ``timing_verdicts``, ``timing_excluded``, ``verdict_matrix``, ``phase_cells``,
  ``mi_audit_table``, ``importance_table``, ``lambda_limits``; for a study with arms
  ``arm_verdicts``, ``arm_comparisons``, ``arm_lesions``;
- the report itself: ``build_report``; and ``display_table`` (a table rounded and renamed as
  the report shows it).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "StudyData",
    "arm_comparisons",
    "arm_lesions",
    "arm_verdicts",
    "build_report",
    "claims_by_cell",
    "display_table",
    "importance_table",
    "lambda_limits",
    "load_study",
    "mi_audit_table",
    "phase_cells",
    "seeds",
    "study_cells",
    "timing_excluded",
    "timing_verdicts",
    "verdict_matrix",
]

_OWNERS = {name: "analysis.api" for name in __all__} | {"build_report": "analysis.report"}


def __getattr__(name: str) -> Any:
    if name in _OWNERS:
        return getattr(importlib.import_module(_OWNERS[name]), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
