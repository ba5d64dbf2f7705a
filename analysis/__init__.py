"""Read a study's runs back from MLflow; report when functional and structural modularity emerge.

Importing ``analysis`` imports nothing: ``study.contract.outcomes`` (the per-seed outcomes that
``study`` also uses) is pure NumPy, and the MLflow/pandas/matplotlib parts live in
``analysis.runs``, ``analysis.report``, ``analysis.phase`` and ``analysis.figures``; import them
by module.
"""
