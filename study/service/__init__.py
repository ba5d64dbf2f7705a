"""The service: one trial runner, MLflow tracking, the Ray Tune worker and driver.

runner (config -> MLflow run -> training -> outputs -> status), summary (the run-data tables of
a trial), tracking (MLflow runs, tags, artifacts, UI views), worker (the Tune trainable),
driver (Ray Tune + Optuna: a study from its spec, resume).
"""
