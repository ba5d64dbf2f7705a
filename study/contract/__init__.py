"""The run-data contract: the one torch-free owner of what study writes and analysis reads.

names (curve and summary metric names), tags, params and artifacts (MLflow tag, param and file
names), outcomes (the per-seed outcome rules: finals, success, onsets, which first), settings
(the machine settings read from the environment), text (redaction and one-line messages).
``analysis`` imports nothing of ``study`` but this package; nothing here imports torch or the
rest of ``study``.
"""
