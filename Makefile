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

.PHONY: help venv book book-offline test lint student autograde clean distclean book-system book-latest linkcheck release-check pdf pdf-deps

help:
	@echo "make book   build the book into _build/html (executes every notebook)"
	@echo "make test   ruff + pytest (unit tests, repo checks, notebooks in test mode)"
	@echo "make venv   create $(VENV) ($(TORCH_SPEC) first, then -e .[book,test])"
	@echo "make lint   ruff only;  make clean   remove build outputs"
	@echo "make book-offline  the book with MathJax served from the site (reads without a network)"
	@echo "make student  student edition of the graded chapters (nbgrader) in _build/course/release"
	@echo "make autograde SUBMISSIONS=DIR  autograde DIR/<student>/<chapter>.ipynb (nbgrader)"
	@echo "make pdf    the book as one PDF, _build/latex/$(PDF_NAME).pdf (needs XeLaTeX: see README)"
	@echo "make pdf-deps  install the TeX Live packages of make pdf with apt-get (Debian/Ubuntu)"
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

# The book as one PDF, through Jupyter Book's LaTeX builder and XeLaTeX (settings under
# `latex:` in _config.yml). Not part of `make test` or CI: TeX Live is large (the README's
# "PDF of the book" lists the packages). Executes every notebook, as `make book` does.
PDF_NAME := in-context-recall-book
# The Debian/Ubuntu packages it needs (about 350 MB installed), and a target that installs them.
PDF_DEBIAN_PACKAGES := texlive-xetex texlive-latex-recommended texlive-latex-extra \
  texlive-fonts-recommended fonts-freefont-otf latexmk
SUDO ?= $(if $(filter 0,$(shell id -u)),,sudo)
pdf-deps:
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y --no-install-recommends $(PDF_DEBIAN_PACKAGES)

pdf: venv
	@command -v xelatex >/dev/null && command -v latexmk >/dev/null || \
	  { echo "make pdf needs xelatex and latexmk: see the README, 'PDF of the book'"; exit 1; }
	ICL_PROGRESS=0 LATEXMKOPTS="-interaction=nonstopmode -halt-on-error" \
	  $(BIN)/jupyter-book build --builder pdflatex $(BOOK_ARGS)
	test -s _build/latex/$(PDF_NAME).pdf
	@echo "PDF: _build/latex/$(PDF_NAME).pdf"

# Course use (book/course_guide.md): nbgrader, with notebooks/ as the single source.
# student: nbgrader generate_assignment for every chapter holding exercises, in the course
# directory _build/course (student editions in _build/course/release/<chapter>/).
# autograde: nbgrader autograde + export of SUBMISSIONS/<student>/<chapter>.ipynb
# (scores in _build/course/grades.csv and gradebook.db). Local, no server, no container.
student: venv
	$(BIN)/python tools/course.py release

autograde: venv
	@test -n "$(SUBMISSIONS)" || (echo "usage: make autograde SUBMISSIONS=DIR" && exit 2)
	$(BIN)/python tools/course.py autograde $(SUBMISSIONS)

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
