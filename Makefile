# mistudy: the README's commands.  `make demo` and `make test` work on a fresh machine.
VENV       ?= .venv
PYTHON     ?= python3
PY         := $(VENV)/bin/python
STUDY_HOME ?= $(CURDIR)/studies
PYTEST_ARGS ?=
export STUDY_HOME

.PHONY: setup lint format demo test test-fast test-slow bench bench-train bench-effect bench-service clean-studies

## setup: virtualenv with the project (editable), its test, cluster and dev extras; quick when done
setup: $(VENV)/.installed

# torch==2.13.0 first: the CPU wheel on disk; the project's bound (<2.14) then keeps pip on it
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,cluster,dev]'
	touch $@

## demo: a small lambda x K study on the embedded default (local Ray, SQLite MLflow + Optuna)
demo: setup
	$(PY) -m study run search_spaces/demo.yaml
	$(PY) -m analysis report demo

## lint: ruff's rules and its formatter, checked (nothing is changed; `make format` fixes)
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## format: apply ruff's safe fixes and its formatter
format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

FAST := not slow and not cluster and not browser

## test: the whole suite, the quick lane first (real Ray, MLflow, Optuna, ray job submit, chromium)
test: test-fast test-slow

## test-fast: the quick lane (no slow, cluster or browser tests; about 3 minutes)
test-fast: setup
	RAY_AUTH_MODE=disabled $(PY) -m pytest -m "$(FAST)" $(PYTEST_ARGS)

## test-slow: the slow lane (slow, cluster and browser tests)
test-slow: setup
	RAY_AUTH_MODE=disabled $(PY) -m pytest -m "not ($(FAST))" $(PYTEST_ARGS)

## bench: speed benchmarks, JSON with the machine's details under bench/results/
bench: setup
	$(PY) bench/bench_core.py
	$(PY) bench/bench_train.py
	RAY_AUTH_MODE=disabled $(PY) bench/bench_service.py

## bench-effect: train cpu-wm at lambda 0 and at its lambda, write the effect summary (~5 min)
bench-effect: setup
	$(PY) bench/cpu_wm_effect.py

clean-studies:
	rm -rf $(STUDY_HOME)

.PHONY: bench-precision validate-precision

## bench-precision: paper-wm epochs, float32 and bfloat16 critic side by side (S = 1), profile
bench-precision: setup
	$(PY) bench/bench_precision.py --eval-share cpu-wm

## validate-precision: cpu-wm, 8 seeds, lambda 0 / 0.1, float32 vs bfloat16 critic, paired tests
validate-precision: setup
	$(PY) bench/precision_validation.py
