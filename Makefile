# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv as needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench soak test-fast clean bytecode

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Worker processes import aioray at start-up; with PYTHONDONTWRITEBYTECODE set (common in
# containers) an editable install would recompile it in every worker. pip precompiles regular
# installs; for this checkout we do it here (only changed files are recompiled).
bytecode: $(STAMP)
	$(PY) -m compileall -q aioray

demo: $(STAMP) bytecode
	$(PY) examples/quickstart.py

# ruff, then the import layers (.importlinter: imports point down; faces never import an
# implementation).
lint: $(STAMP)
	$(PY) -m ruff check aioray tests benchmarks examples
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(PY) -m mypy aioray

test: $(STAMP) bytecode lint typecheck
	$(PY) -m pytest -q

test-fast: $(STAMP) bytecode
	$(PY) -m pytest -q -x

bench: $(STAMP) bytecode
	$(PY) benchmarks/run.py

# Memory stays flat over 1,000,000 async and 100,000 process tasks (a few minutes).
soak: $(STAMP) bytecode
	$(PY) benchmarks/soak.py

clean:
	rm -rf $(VENV) $(OLD_VENV) $(RAY_VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache

# The Ray backend's tests, in their own venv (.venv stays Ray-free so `make test` proves aioray
# needs no Ray). Starts a local Ray (num_cpus=2) inside the test session.
RAY_VENV := .venv-ray
RAY_PY := $(RAY_VENV)/bin/python
RAY_STAMP := $(RAY_VENV)/.installed

$(RAY_STAMP): pyproject.toml
	test -x $(RAY_PY) || $(PYTHON) -m venv $(RAY_VENV)
	$(RAY_PY) -m pip install -q --upgrade pip
	$(RAY_PY) -m pip install -q -e '.[test,ray]'
	touch $(RAY_STAMP)

# The oldest runtime dependencies pyproject.toml allows (.ci/oldest-constraints.txt), so the
# lower ends of the ranges are tested, not only whatever pip picks today. The suites that cross
# the process boundary (serialization, errors, tasks, actors, generators).
OLD_VENV := .venv-oldest
OLD_PY := $(OLD_VENV)/bin/python
OLD_STAMP := $(OLD_VENV)/.installed

$(OLD_STAMP): pyproject.toml .ci/oldest-constraints.txt
	test -x $(OLD_PY) || $(PYTHON) -m venv $(OLD_VENV)
	$(OLD_PY) -m pip install -q --upgrade pip
	$(OLD_PY) -m pip install -q -c .ci/oldest-constraints.txt -e '.[test]'
	touch $(OLD_STAMP)

.PHONY: test-oldest
test-oldest: $(OLD_STAMP)
	$(OLD_PY) -m pip list 2>/dev/null | grep -iE '^(cloudpickle|uvloop) '
	$(OLD_PY) -m pytest -q -p no:cacheprovider tests/test_core_*.py tests/test_actors_basic.py \
		tests/test_generators_streaming.py tests/test_faults_crashes.py tests/test_actors_process.py

# Every test that runs on Ray: the [ray] parameter of the tests marked all_backends, the
# Ray-only tests, and tests/test_ray_multinode.py (a two-node cluster started with `ray start`,
# run last); tests/conftest.py marks them all ray_backend.
.PHONY: test-ray
test-ray: $(RAY_STAMP)
	$(RAY_PY) -m pytest -q -p no:cacheprovider -m ray_backend tests/
