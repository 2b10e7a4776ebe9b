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

NPM ?= npm
# apt-get needs root; other users go through sudo.
APT_GET := $(if $(filter 0,$(shell id -u)),apt-get,sudo apt-get)

.PHONY: setup workshop test check-export lab bench clean slides browser npm-packages browser-tests

setup: $(VENV)/.installed

# constraints.txt pins torch and torchvision to the builds this machine has on disk.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable ".[dev]"
	touch $@

# npm-packages gives the pages a local MathJax; without npm they show formulas as TeX source.
workshop: setup npm-packages
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

# reveal.js and MathJax for the offline slide decks, at the versions package-lock.json pins.
node_modules/.installed: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund
	touch $@

# The slide tests need the npm packages; without npm they are skipped, with a reason, instead of failing.
npm-packages:
	@if command -v $(NPM) >/dev/null 2>&1; then $(MAKE) --no-print-directory node_modules/.installed; \
	else echo "npm not found: the slide deck tests will be skipped. Install Node.js and npm to run them."; fi

# Headless Chromium for the browser tests, from Debian's package (about a minute the first time); never a
# downloaded browser. Without apt-get the browser tests are skipped, with a reason.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
		$(APT_GET) update && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y chromium \
		|| echo "Installing chromium failed: the browser tests will be skipped."; \
	else echo "Chromium not found and no apt-get: the browser tests will be skipped. Install Chromium to run them."; fi

# One offline reveal.js deck per lesson in build/slides, from build/workshop's executed lessons when present.
slides: setup node_modules/.installed
	$(BIN)/python -m helpers.slides build --output build/slides

browser-tests: setup npm-packages browser
	$(TEST_ENV) $(BIN)/python -m pytest tests/test_slides.py tests/test_lab.py

# nbdev-test runs two notebooks at once on two cores, so each gets one thread; more would oversubscribe the CPU.
test: check-export npm-packages browser
	mkdir -p $(TEST_CACHE)
	$(TEST_ENV) OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2
	$(TEST_ENV) $(BIN)/python -m pytest

# Benchmarks: ratios measured in one run on one machine; docs/benchmarks.md records the results.
bench: setup
	mkdir -p build/bench
	$(BIN)/python bench/course.py --output build/bench/course | tee build/bench/course.json
	$(BIN)/python bench/imports.py | tee build/bench/imports.json
	$(BIN)/python bench/throughput.py | tee build/bench/throughput.json
	if [ -f bench/download.py ]; then $(BIN)/python bench/download.py | tee build/bench/download.json; fi

# The venv's bin comes first on PATH, so the default "python3" kernel is the venv's Python, with `helpers`.
lab: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/jupyter lab --notebook-dir=nbs $(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf build
