"""Build the book, or a few of its pages, to read without a network connection.

The published book loads MathJax 3 from a CDN (Sphinx's default ``mathjax_path``). This
script builds with a local copy instead: the npm package ``mathjax@3``, installed with
``npm`` into ``_build/mathjax`` on first use (or any MathJax 3 ``es5`` folder given with
``--mathjax`` or the ``ICL_MATHJAX_DIR`` variable). The copy is served with the site
(``_static/mathjax/``), so the HTML reads offline, equations included. The pages'
saved widget states are not rendered (the ipywidgets embedding scripts also come from a
CDN): a live widget needs a kernel anyway (Binder, Colab, or a local Jupyter).

Usage (from the repository root, in the project's venv)::

    .venv/bin/python tools/offline_book.py                       # make book-offline
    .venv/bin/python tools/offline_book.py --pages notebooks/03_optimal_transformer \\
        notebooks/explorer --out _build/browser-test --test-mode   # the browser test's book

The whole book is built as ``make book`` builds it (every notebook executed, warnings are
errors); a selection of pages (``--pages``) gets its own table of contents (the first page
is the root, the reference list is added so that citations resolve) and is built without
``-W`` (links to the pages left out do not resolve). ``--test-mode`` executes the notebooks
with ``ICL_TEST_MODE=1``. The site is ``<out>/_build/html``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
#: where ``npm install --prefix`` puts MathJax when no copy is given
NPM_PREFIX = ROOT / "_build" / "mathjax"
MATHJAX_PACKAGE = "mathjax@3"
MATHJAX_ENTRY = "tex-mml-chtml.js"  # the component Sphinx's default mathjax_path loads
REFERENCES = "book/references"
BOOK_ARGS = ["--all", "-W", "-n", "--keep-going"]  # as the Makefile's `make book`


def find_mathjax(explicit: Path | None = None, install: bool = True) -> Path:
    """The ``es5`` folder of a local MathJax 3 (``--mathjax``, ``ICL_MATHJAX_DIR``, or
    ``_build/mathjax``, installing ``mathjax@3`` there with npm if ``install``)."""
    given = explicit or (Path(os.environ["ICL_MATHJAX_DIR"]) if os.environ.get(
        "ICL_MATHJAX_DIR") else None)
    if given is not None:
        if not (given / MATHJAX_ENTRY).is_file():
            raise FileNotFoundError(
                f"{given} holds no {MATHJAX_ENTRY}: give the es5 folder of MathJax 3 "
                f"(npm install {MATHJAX_PACKAGE}: node_modules/mathjax/es5)"
            )
        return given
    es5 = NPM_PREFIX / "node_modules" / "mathjax" / "es5"
    if not (es5 / MATHJAX_ENTRY).is_file():
        npm = shutil.which("npm")
        if not install or npm is None:
            raise FileNotFoundError(
                f"no local MathJax at {es5}; install it with "
                f"`npm install --prefix {NPM_PREFIX} {MATHJAX_PACKAGE}` (Node.js's npm), or "
                "set ICL_MATHJAX_DIR to a MathJax 3 es5 folder"
            )
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NPM_PREFIX),
             MATHJAX_PACKAGE],
            check=True,
        )
    return es5


def offline_config(static_dir: Path) -> dict:
    """The book's ``_config.yml`` with MathJax served from ``static_dir/mathjax``."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
    sphinx_config["mathjax_path"] = f"mathjax/{MATHJAX_ENTRY}"  # relative: under _static/
    sphinx_config["html_static_path"] = [str(static_dir)]
    sphinx_config["nb_ipywidgets_js"] = {}  # CDN scripts; widgets need a kernel anyway
    # the bibliography and the table of contents are read from the repository root
    config["bibtex_bibfiles"] = [str(ROOT / b) for b in config.get("bibtex_bibfiles", [])]
    return config


def pages_toc(pages: list[str]) -> dict:
    """A table of contents of ``pages`` (the first is the root), plus the references."""
    rest = [p for p in pages[1:] if p != REFERENCES]
    return {
        "format": "jb-book",
        "root": pages[0],
        "chapters": [{"file": p} for p in [*rest, REFERENCES] if p != pages[0]],
    }


def build(
    out: Path,
    pages: list[str] | None = None,
    *,
    mathjax: Path | None = None,
    test_mode: bool = False,
) -> Path:
    """Build into ``out`` and return the site's folder (``out/_build/html``)."""
    out = out.resolve()
    for page in pages or []:
        if not any((ROOT / f"{page}{s}").is_file() for s in (".ipynb", ".md")):
            raise FileNotFoundError(f"pages: no {page}.ipynb or {page}.md under {ROOT}")
    es5 = find_mathjax(mathjax)
    static = out / "static"
    if static.exists():
        shutil.rmtree(static)
    shutil.copytree(es5, static / "mathjax")
    config_path = out / "_config.yml"
    config_path.write_text(yaml.safe_dump(offline_config(static), sort_keys=False), "utf-8")
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(ROOT),
           "--config", str(config_path), "--path-output", str(out)]
    if pages:
        toc_path = out / "_toc.yml"
        toc_path.write_text(yaml.safe_dump(pages_toc(pages), sort_keys=False), "utf-8")
        cmd += ["--toc", str(toc_path), "--all"]
    else:
        cmd += BOOK_ARGS
    env = {**os.environ, "ICL_PROGRESS": "0", "JUPYTER_PREFER_ENV_PATH": "1"}
    if test_mode:
        env["ICL_TEST_MODE"] = "1"
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    return out / "_build" / "html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", nargs="+", help="pages as in _toc.yml (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "offline")
    parser.add_argument("--mathjax", type=Path, help="a MathJax 3 es5 folder")
    parser.add_argument("--test-mode", action="store_true", help="ICL_TEST_MODE=1")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    html = build(args.out, args.pages, mathjax=args.mathjax, test_mode=args.test_mode)
    print(f"offline site: {html} (open index.html; {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
