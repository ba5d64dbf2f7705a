"""The MLflow tags of the run-data contract and their values (docs/run-data.md, "Tags").

`study.service.tracking` writes these tags and `analysis.runs` reads them; both import the names
from here, so a tag is spelled once. Pure constants: importing this module imports nothing.
"""

from __future__ import annotations

__all__ = [
    "TAG_ROLE",
    "TAG_NAME",
    "TAG_TRIAL",
    "TAG_STATUS",
    "TAG_TASK",
    "TAG_SWEPT",
    "TAG_OBJECTIVES",
    "TAG_COMMIT",
    "TAG_VERSIONS",
    "TAG_MESSAGE",
    "TAG_PARENT",
    "TAG_ARM",
    "TAG_ARMS",
    "TAGS",
    "ROLE_STUDY",
    "ROLE_TRIAL",
    "ROLES",
    "STATUSES",
]

TAG_ROLE = "study.role"  # ROLE_STUDY or ROLE_TRIAL, on every run
TAG_NAME = "study.name"  # the study name, on every run
TAG_TRIAL = "study.trial_id"  # the trial id, on trial runs (a resumed trial finds its run by it)
TAG_STATUS = "study.status"  # one of STATUSES, on every run
TAG_TASK = "study.task"  # the task name (study.contract.outcomes.TASK_METRIC's keys)
TAG_SWEPT = "study.swept"  # JSON list of the searched dotted keys, on the study run
TAG_OBJECTIVES = "study.objectives"  # JSON list of {"metric", "direction"}, on the study run
TAG_COMMIT = "study.git_commit"  # commit hash of the code, or "unknown", on the study run
TAG_VERSIONS = "study.versions"  # JSON object of library versions, on the study run
TAG_MESSAGE = "study.message"  # one line: why a trial diverged, failed or was stopped
TAG_PARENT = "mlflow.parentRunId"  # MLflow's own link from a trial run to its study run
TAG_ARM = "study.arm"  # the arm of a trial run, in a study with `arms` (also its param `arm`)
# JSON {"control": name, "arms": {name: {dotted key: value}}}, on the study run of such a study
TAG_ARMS = "study.arms"

TAGS = (
    TAG_PARENT,
    TAG_ROLE,
    TAG_NAME,
    TAG_TRIAL,
    TAG_STATUS,
    TAG_TASK,
    TAG_SWEPT,
    TAG_OBJECTIVES,
    TAG_COMMIT,
    TAG_VERSIONS,
    TAG_MESSAGE,
    TAG_ARM,
    TAG_ARMS,
)

# the values of TAG_ROLE
ROLE_STUDY = "study"
ROLE_TRIAL = "trial"
ROLES = (ROLE_STUDY, ROLE_TRIAL)
# the values of TAG_STATUS (stopped: ended early by a scheduler or by an interrupt)
STATUSES = ("running", "finished", "diverged", "failed", "stopped")
