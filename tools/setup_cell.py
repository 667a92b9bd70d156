"""The canonical first code cell of every chapter notebook.

It is defined here once. ``tools/sync_setup_cell.py`` writes it into the notebooks and
``tests/test_repo.py`` checks that every notebook carries it verbatim. The repository URL
is read from ``_config.yml`` (``repository.url``), its only home; the release tag must
match the version in ``pyproject.toml`` (checked by the tests too).

What the cell does: on Colab only (``google.colab`` is loaded in every Colab kernel) and
only if ``icl`` is not importable yet, it pip-installs this repository's package from a
*tagged release*, quietly and without ``--upgrade``, so Colab's own torch and numpy are
left alone (the package asks only for ranges such as ``torch>=2.1``). On Binder or a local
checkout the package is already installed and the cell only imports it. It then prints
the mode banner (``icl: TEST MODE ...`` when ``ICL_TEST_MODE=1``), which the notebook
tests look for.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

def package_version(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The package version, whose only home is ``pyproject.toml``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])


#: Release tag installed on Colab: ``v`` + the version in pyproject.toml.
RELEASE_TAG = "v" + package_version()

#: Cell tags: the code is folded away in the book, the banner line stays visible.
SETUP_CELL_TAGS = ["hide-input"]

_TEMPLATE = """\
# Set-up (the same in every chapter). On Colab, install the book's package from a tagged
# release, leaving Colab's torch and numpy as they are. On Binder or locally: nothing to do.
import importlib.util
import subprocess
import sys

PACKAGE = "git+{url}@{tag}"
if "google.colab" in sys.modules and importlib.util.find_spec("icl") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", PACKAGE], check=True)

import icl

print(icl.config.mode_banner())"""


def repository_url(config_path: Path = ROOT / "_config.yml") -> str:
    """``repository.url`` of the book's ``_config.yml``, without a trailing slash."""
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    return str(config["repository"]["url"]).rstrip("/")


def setup_cell_source(url: str | None = None, tag: str = RELEASE_TAG) -> str:
    """Source of the set-up cell for ``url`` (default: from ``_config.yml``) and ``tag``."""
    return _TEMPLATE.format(url=url or repository_url(), tag=tag)


#: The canonical source of the first code cell of every notebook.
SETUP_CELL: str = setup_cell_source()
