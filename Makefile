# Two commands do all set-up on a fresh machine: `make report` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# One virtual environment per use, each installing pyproject.toml's pinned extras (the one list of
# versions): .venv-report for reading and publishing (make report, make lab: runtime + notebooks,
# which brings the evaluation extra's peer libraries), .venv for everything else (make test and the
# developer targets: every extra, the test oracles of requirements-oracles-nodeps.txt). Both can live
# in one clone. VENV=DIR on the command line puts every target, make report and make lab included, in
# that one environment (it gets every extra).
VENV ?= .venv
ifeq ($(origin VENV),command line)
  REPORT_VENV ?= $(VENV)
else
  REPORT_VENV ?= .venv-report
endif
BIN := $(VENV)/bin
REPORT_BIN := $(REPORT_VENV)/bin
# Offline, downloads are read from the mirror beside the checkout when it exists.
MIRROR := $(abspath ../shared/data)
ifeq ($(origin GRADCAM_MIRROR), undefined)
  ifneq ($(wildcard $(MIRROR)/SHA256SUMS),)
    export GRADCAM_MIRROR := $(MIRROR)
  endif
endif
export PYTHONHASHSEED := 0
NOTEBOOKS := $(sort $(wildcard notebooks/*.py))
EXECUTED := $(NOTEBOOKS:.py=.ipynb)
NB := $(BIN)/python -m gradcam_tutorial.publishing.notebooks
REPORT_NB := $(REPORT_BIN)/python -m gradcam_tutorial.publishing.notebooks

.PHONY: venv venv-report system-deps lint test test-fast test-publish nbval notebooks notebooks-diff references lab report report-full bench soak mutate clean

# The development environment: the package (editable) with every extra (dev includes notebooks,
# which includes evaluation), then Quantus and pandas without their dependencies (see that file).
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml requirements-oracles-nodeps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps -r requirements-oracles-nodeps.txt
	touch $@

# The reader's environment: the package (editable) with the notebooks extra only; no test, lint or
# mutation tools. Where REPORT_VENV is VENV, the development environment above serves.
venv-report: $(REPORT_VENV)/.installed
ifneq ($(abspath $(REPORT_VENV)),$(abspath $(VENV)))
$(REPORT_VENV)/.installed: pyproject.toml
	test -x $(REPORT_BIN)/python || $(PYTHON) -m venv $(REPORT_VENV)
	$(REPORT_BIN)/python -m pip install -q --upgrade pip
	$(REPORT_BIN)/python -m pip install -q -e '.[notebooks]'
	touch $@
endif

# Headless Chromium and Jekyll for the publishing tests (Debian packages; needs root or sudo).
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! command -v jekyll >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver jekyll >/dev/null; \
	fi

# Every test: unit tests, peer oracles, publishing in a real browser and a real Jekyll, then nbval
# (strict) re-running every committed notebook under three CPU variants (see `make nbval`).
test: venv system-deps lint
	$(BIN)/python -m pytest -q --durations=0 --durations-min=0.5 tests
	$(NB) nbval $(EXECUTED)

# nbval strict over every notebook three times: as is, with oneDNN (and PyTorch's and MKL's own
# kernels) limited to AVX2, and limited to SSE4.1 on one thread, so that this machine stands in
# for the CPUs of the people who clone the repo.
nbval: venv
	$(NB) nbval $(EXECUTED)

# ruff (lint rules and formatting, pyproject's [tool.ruff]) and mypy (pyproject's [tool.mypy]) over
# the package, the benchmark scripts, the tests and the notebooks' .py sources.
LINTED := src tests benchmarks notebooks
lint: venv
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

# Mutation testing ([tool.mutmut] in pyproject.toml): mutmut 3 puts each mutant of the core and
# metric modules in a fresh fork with the tests that reach it, two at a time on one thread each.
# Subprocesses the tests start import the mutated copy too (PYTHONPATH). build/mutation/ gets the
# score per module and every survivor not explained in tests/mutation/equivalent.toml.
mutate: venv
	rm -rf mutants build/mutation
	mkdir -p build/mutation mutants/src  # on sys.path before mutmut fills it
	PATH=$(abspath $(BIN)):$$PATH PYTHONPATH=$(CURDIR)/mutants/src OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children 2 2>&1 \
	  | tr '\r' '\n' | grep -v '^\s*$$' > build/mutation/mutmut.log || { tail -40 build/mutation/mutmut.log; exit 1; }
	tail -3 build/mutation/mutmut.log
	$(BIN)/python tests/mutation/summarise.py --out build/mutation

# Everything but the browser/Jekyll tests and nbval, for a quick loop while editing.
test-fast: venv
	$(BIN)/python -m pytest -q tests -m "not browser and not jekyll and not slow"

test-publish: venv system-deps
	$(BIN)/python -m pytest -q tests -m "browser or jekyll"

# Re-execute every notebook in place from its .py (what a developer runs after editing a .py).
# A checked number that moved beyond its tolerance stops it with the list of numbers that moved.
notebooks: venv
	$(NB) execute $(NOTEBOOKS)

# Re-execute into a temporary folder and show which compared outputs changed and which checked
# numbers moved beyond their tolerance; the committed notebooks are left alone.
notebooks-diff: venv
	$(NB) diff $(NOTEBOOKS)

# Measure every checked number's spread across six CPU variants, rewrite tests/reference/ from it
# and re-execute the notebooks (after a deliberate change of the numbers; takes about 5 minutes).
references: venv
	$(NB) spread --write $(NOTEBOOKS)

# JupyterLab on notebooks/ with Jupytext: tutorial.py and report.py open as notebooks (saving one
# writes its paired .ipynb too). notebooks/lab-overrides.json makes "Jupytext Notebook" the default
# viewer of Python files; JupyterLab reads it as labconfig/default_setting_overrides.json from a folder
# put first on JUPYTER_CONFIG_PATH, so neither ~/.jupyter nor the venv is changed. Ctrl-C stops it.
# More options for JupyterLab go in LAB_ARGS, e.g. `make lab LAB_ARGS="--port=8890"`.
LAB_CONFIG := build/lab-config
LAB_ARGS ?=
lab: venv-report
	mkdir -p $(LAB_CONFIG)/labconfig
	cp notebooks/lab-overrides.json $(LAB_CONFIG)/labconfig/default_setting_overrides.json
	@echo "GRADCAM_MIRROR=$${GRADCAM_MIRROR:-(unset: downloads go to the web)}"
	@echo "JupyterLab prints its URL (with the token) below; it opens notebooks/tutorial.py as a notebook."
	JUPYTER_CONFIG_PATH=$(abspath $(LAB_CONFIG))$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH} \
	  $(REPORT_BIN)/python -m jupyterlab --no-browser --ServerApp.root_dir=notebooks \
	  --LabApp.default_url=/lab/tree/tutorial.py $$( [ "$$(id -u)" != 0 ] || echo --allow-root ) $(LAB_ARGS)

# Execute the notebooks into build/ and render the HTML site and the Jekyll posts from them, in the
# reader's environment (no selenium there, so the headless-browser check is make test's job).
report: venv-report
	$(REPORT_NB) execute --out build/executed $(NOTEBOOKS)
	$(REPORT_BIN)/python -m gradcam_tutorial.publishing.publish --notebooks build/executed --sources notebooks --out build

# The report's full evaluation on the 1000 mirrored validation photos (30 to 45 minutes on two
# cores): build/report/ and the committed copy of its numbers, results/report-full.json.
# glibc's malloc keeps freed blocks up to 1 GiB instead of handing them back to the kernel after
# every pass (MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_, documented in mallopt(3)): 50 frees and
# reallocations of a 50 MB array cost 442 page faults instead of 22 750.
report-full: venv
	MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \
	  $(BIN)/python -m gradcam_tutorial.evaluation.report --out build/report --results results/report-full.json

bench: venv
	$(BIN)/python benchmarks/bench.py --out build/bench.json
	$(BIN)/python benchmarks/bench_memory.py --out build/bench-memory.json
	$(BIN)/python benchmarks/bench_road.py --out build/bench-road.json
	$(BIN)/python benchmarks/bench_every_class.py --out build/bench-every-class.json
	$(BIN)/python benchmarks/bench_full_run.py --out build/bench-full-run.json

soak: venv
	$(BIN)/python benchmarks/soak.py --calls 500 --constructions 50

clean:
	rm -rf build
