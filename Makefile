# Quick start: `make demo` (synthetic study), `make test` and `make test-fast`. Each creates .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# One test worker per core: with the Debian packages installed before the suite, a third worker on 2 cores
# no longer found idle time to fill and cost 73 s of CPU more (suite 465 s against 457 s with 2 workers; it
# was 634 s against 666 s while the suite waited on those installs).
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(os.cpu_count() or 1)")

# Every process writes the bytecode of what it imports (into .venv and __pycache__), so each module is compiled
# once, by whichever process imports it first: these machines set PYTHONDONTWRITEBYTECODE, under which each
# process, each kernel included, would compile again whatever it imports. Nothing is compiled at install: in
# `make test` the two test workers compile what they import while they collect, on both cores (27-30 s), where
# one process importing every module at install and the collection after it took 36-39 s on one core, then two.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install demo test test-fast bench clean

install: $(STAMP)

# requirements-dev.txt: the pinned runtime lock (requirements.txt) plus the test tools, installed by uv with
# the package itself (editable) in one resolution: it downloads and unpacks in parallel (the whole install
# 30-40 s on 2 cores from a fresh clone; 69 s when pip downloaded the wheels for uv, 98 s with pip alone).
# uv reads its own settings, not pip's: behind a mirror set UV_DEFAULT_INDEX.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv~=0.13.9"  # pip itself is upgraded by uv, with the lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements-dev.txt -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: install
	$(BIN)/ecgkeras study --demo --publish results/demo-synthetic

# The suite on every core (pytest-xdist, idle workers take tests from busy ones; the trained runs and
# studies the tests share are built once);
# test-fast leaves out what trains a model, starts a kernel or installs something (@pytest.mark.slow).
# The Debian packages of the components the tests start for real (SLURM, PostgreSQL, Chromium) are installed
# by one apt-get beside the Python install, when missing and root (tests/system_packages.py): 16 s on idle
# cores, and the suite no longer waits on three installs in its middle.
test:
	$(PYTHON) tests/system_packages.py & packages=$$!; \
	$(MAKE) --no-print-directory install; installed=$$?; wait $$packages && exit $$installed
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

test-fast: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not slow"

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs data .pytest_cache
