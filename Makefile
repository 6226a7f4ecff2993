# The two commands of the README:
#   make book   set up, then build the HTML book into _build/html from the stored outputs
#   make test   set up, then run every check (pytest, nbval on every chapter, pairs, book -W)
# Set-up creates .venv when no virtual environment is active and installs the project into it.

SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

ifdef VIRTUAL_ENV
  PY := $(VIRTUAL_ENV)/bin/python
  VENV := $(VIRTUAL_ENV)
else
  VENV := .venv
  PY := $(VENV)/bin/python
endif
STAMP := $(VENV)/.skinlesion-installed
CHAPTERS_PY := $(sort $(wildcard chapters/[0-9][0-9]_*.py))
CHAPTERS_NB := $(CHAPTERS_PY:.py=.ipynb)
export SKINLESION_DATA ?= $(abspath ../shared/data)
export PYTHONHASHSEED := 0

.PHONY: help setup test book pytest nbval lab lab-check pairs check-book notebooks clean gpu-data gpu-bench
help:
	@echo "make book    build the HTML book (_build/html/index.html)"
	@echo "make test    run every check: pytest, nbval (ci profile), the graded labs, pairs, book build -W"
	@echo "make notebooks  re-execute every chapter in the ci profile and store its outputs"
	@echo "make lab     build the otter-grader assignments (student, autograder, solutions) into dist/lab"

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision first: keeps an existing (e.g. Colab or local) build in place
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q torch torchvision
	$(PY) -m pip install -q -e ".[test,book,lab]"
	touch $(STAMP)

setup: $(STAMP)

pytest: setup
	start=$$(date +%s)
	$(PY) -m pytest tests -q -p no:cacheprovider -m "not lab_grading" --durations=5
	echo "=== pytest: $$(( $$(date +%s) - start )) s"

pairs: setup
	$(PY) -m skinlesion_utils book check

nbval: setup
	# one chapter at a time, in order: later chapters load the runs earlier ones trained;
	# --durations names each chapter's slowest cells (no cell may come near the cell timeout).
	# The chapters write their numbers into a copy of results/ (later chapters read it), so that
	# a check run never changes the stored numbers the pages were rendered from.
	scratch=$$(mktemp -d)
	trap 'rm -rf "$$scratch"' EXIT
	cp -r results "$$scratch/results"
	export SKINLESION_RESULTS="$$scratch/results"
	for nb in $(CHAPTERS_NB); do
	  echo "=== nbval $$nb"
	  start=$$(date +%s)
	  SKINLESION_PROFILE=ci $(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
	    --nbval-cell-timeout=1200 --nbval-sanitize-with .nbval_sanitize.cfg --durations=3 "$$nb"
	  echo "=== $$nb: $$(( $$(date +%s) - start )) s"
	done

lab: setup
	# one otter-grader assignment per chapter (student notebook, autograder zip, solutions) in dist/lab
	$(PY) -m skinlesion_utils lab assign --out dist/lab

lab-check: setup
	# the assignments build, and otter grades them right: every chapter's solutions score full
	# marks and its untouched student notebook 0; a notebook that fakes its checks scores 0, a
	# partly solved one exactly its points. Each grading is its own kernel (mostly single-threaded
	# Python), so two run at once, each with one thread.
	start=$$(date +%s)
	SKINLESION_PROFILE=ci OMP_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider -n 2 -m lab_grading \
	  tests/test_lab_assignments.py --durations=5 -rP
	echo "=== lab-check: $$(( $$(date +%s) - start )) s"

check-book: setup
	rm -rf _build/html
	start=$$(date +%s)
	$(VENV)/bin/jupyter-book build . --warningiserror --nitpick --keep-going --quiet
	$(PY) -m skinlesion_utils lab assign --out dist/lab --publish _build/html/lab
	echo "=== check-book: $$(( $$(date +%s) - start )) s"

test: pairs pytest nbval lab-check check-book
	@echo "make test: all checks passed"

book: setup
	$(VENV)/bin/jupyter-book build . --quiet
	$(PY) -m skinlesion_utils lab assign --out dist/lab --publish _build/html/lab
	@echo "Book: $(abspath _build/html/index.html)"

notebooks: setup
	$(PY) -m skinlesion_utils book execute $(CHAPTERS_PY)

clean:
	rm -rf _build dist .pytest_cache

# GPU benchmark (issue "GPU benchmark"): pack the data into one compact file here, then run
# `make gpu-bench` on a GPU machine that has the repository and that file (no internet needed).
GPU_DATA := .gpu/isic_balanced_224.pt
gpu-data: setup
	$(PY) -m skinlesion_utils gpu-bench --pack --data $(GPU_DATA)

gpu-bench: setup
	$(PY) -m skinlesion_utils gpu-bench --data $(GPU_DATA)
