# The course's entry points. `make workshop` runs the whole course; `make test` runs every check.
# Both create the virtual environment in .venv on first use, so they are all a fresh machine needs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# DATA: a folder of class_name/image files. Empty means the synthetic sample dataset.
DATA ?=
OUTPUT ?= build/workshop
# Tests use their own caches, so they neither read nor fill the learner's ones.
TEST_CACHE := $(CURDIR)/build/test-cache
TEST_ENV := COURSE_CACHE=$(TEST_CACHE) TORCH_HOME=$(TEST_CACHE)/torch COURSE_ONLINE= MPLBACKEND=Agg

.PHONY: setup workshop test check-export lab bench clean

setup: $(VENV)/.installed

# constraints.txt pins torch and torchvision to the builds this machine has on disk.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable ".[dev]"
	touch $@

workshop: setup
	$(BIN)/python -m helpers.workshop --output $(OUTPUT) $(if $(DATA),--data "$(DATA)")

# The library must be exactly what the notebooks export, and the notebooks must be clean.
check-export: setup
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
	@changed=$$(git status --porcelain -- helpers nbs); \
	if [ -n "$$changed" ]; then \
		echo "nbdev-export or nbdev-clean changed these files; run both and commit the result:"; \
		echo "$$changed"; git --no-pager diff --stat -- helpers nbs; exit 1; \
	fi

test: check-export
	mkdir -p $(TEST_CACHE)
	$(TEST_ENV) $(BIN)/nbdev-test --n-workers 2
	$(TEST_ENV) $(BIN)/python -m pytest

# Benchmarks: ratios measured in one run on one machine; docs/benchmarks.md records the results.
bench: setup
	mkdir -p build/bench
	$(BIN)/python bench/course.py --output build/bench/course | tee build/bench/course.json
	$(BIN)/python bench/imports.py | tee build/bench/imports.json
	$(BIN)/python bench/throughput.py | tee build/bench/throughput.json
	if [ -f bench/download.py ]; then $(BIN)/python bench/download.py | tee build/bench/download.json; fi

lab: setup
	$(BIN)/jupyter lab --notebook-dir=nbs

clean:
	rm -rf build
