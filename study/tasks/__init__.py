"""Task generators: working memory and chaotic signal separation.

`task_metric(cfg)` is the one place callers outside the tasks ask which metric scores a task
(issue 10 grows this module into the task registry behind the same function).
"""
from __future__ import annotations

from typing import Any

from analysis.outcomes import TASK_METRIC


def task_metric(cfg: Any) -> str:
    """The per-evaluation metric that scores cfg's task ("accuracy" or "r2")."""
    return TASK_METRIC[cfg.task.name]
