# The book's two commands:   make book   (build the HTML book, every notebook executed)
#                            make test   (lint + unit tests + every notebook in test mode)
# Both create .venv on first use. Override the torch install on a laptop, e.g.
#   make book TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
#   make book TORCH_SPEC="torch>=2.1"

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PYTEST_WORKERS ?= 2
STAMP := $(VENV)/.icl-installed

# The tensors here are small: one BLAS/OpenMP thread per process is as fast as two, and
# two threads per process collapse when pytest's two workers (or two kernels) share the
# two cores (measured: a 9 ms training step became 140 ms). Override on the command line.
export OMP_NUM_THREADS ?= 1

# Notebooks run on the kernel named python3: make it this venv's Python, even on a laptop
# whose ~/.local/share/jupyter holds a python3 kernel of another environment.
export JUPYTER_PREFER_ENV_PATH = 1

.PHONY: help venv book book-offline test lint student clean distclean book-system book-latest linkcheck release-check

help:
	@echo "make book   build the book into _build/html (executes every notebook)"
	@echo "make test   ruff + pytest (unit tests, repo checks, notebooks in test mode)"
	@echo "make venv   create $(VENV) ($(TORCH_SPEC) first, then -e .[book,test])"
	@echo "make lint   ruff only;  make clean   remove build outputs"
	@echo "make book-offline  the book with MathJax served from the site (reads without a network)"
	@echo "make student  student edition of the chapters (solutions removed) in _build/student"
	@echo "make release-check  what a release needs (version, tags, stripped notebooks, both commands)"
	@echo "make book-latest / book-system / linkcheck   the weekly checks of the workflows"

venv: $(STAMP)

# torch goes in first, from $(TORCH_SPEC): the package's own `torch>=2.1` is then already
# satisfied, so pip never pulls a (multi-GB, CUDA) torch by itself. Redone when
# pyproject.toml or this Makefile changes.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -e ".[book,test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3"
	touch $@

# Execution is forced by _config.yml (execute_notebooks: force); a failing cell fails the
# build (raise_on_error), and so does any warning (-W -n --keep-going).
BOOK_ARGS := --all -W -n --keep-going .

book: venv
	ICL_PROGRESS=0 $(BIN)/jupyter-book build $(BOOK_ARGS)

# The book to read without a network connection: as `make book`, but MathJax 3 comes from
# a local copy (npm's mathjax@3, installed into _build/mathjax on first use, which needs npm)
# served with the site. Site: _build/offline/_build/html (tools/offline_book.py).
book-offline: venv
	ICL_PROGRESS=0 $(BIN)/python tools/offline_book.py --out _build/offline

# tests/test_browser.py runs only with ICL_BROWSER_TEST=1 (.ci/run sets it): it builds two
# pages and opens them in the system's headless Chromium.
test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS)

lint: venv
	$(BIN)/ruff check .

# Course use: the chapters with every exercise's solution removed and its check cell
# replaced by a stub (tools/make_student.py); notebooks/ stays the single source.
student: venv
	$(BIN)/python tools/make_student.py --out _build/student

# The weekly workflow's checks, runnable here too.
# book-system: the book with the packages of the Python that runs make (e.g. Colab's image):
# nothing is upgraded; only this package and the book tooling are added.
book-system:
	$(PYTHON) -m pip install -e ".[book]"
	$(PYTHON) -m ipykernel install --user --name python3 --display-name "Python 3"
	ICL_PROGRESS=0 jupyter-book build $(BOOK_ARGS)

# book-latest: a separate venv with the newest releases of torch and numpy (on Linux pass
# TORCH_PIP_ARGS="--index-url .../whl/cpu" to avoid the CUDA build).
LATEST := .venv-latest
book-latest:
	test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --upgrade $(TORCH_PIP_ARGS) torch
	$(LATEST)/bin/python -m pip install --upgrade numpy -e ".[book]"
	$(LATEST)/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3"
	ICL_PROGRESS=0 $(LATEST)/bin/jupyter-book build $(BOOK_ARGS)

# Every external link of the book (needs a network connection).
linkcheck: venv
	$(BIN)/jupyter-book build --builder linkcheck .

# What a release needs: tools/release_check.py (TAG=vX.Y.Z checks a planned tag name).
release-check: venv
	$(BIN)/python tools/release_check.py $(if $(TAG),--tag $(TAG),)

clean:
	rm -rf _build .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(LATEST) *.egg-info
