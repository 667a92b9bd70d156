"""Repository hygiene: notebooks, table of contents, set-up cell, environments, config.

These checks read files only; they execute nothing (tests/test_notebooks.py does).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools.setup_cell import RELEASE_TAG, SETUP_CELL, SETUP_CELL_TAGS, repository_url

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CHAPTERS = [
    "01_task",
    "02_bayes_risk",
    "03_optimal_transformer",
    "04_training",
    "05_generalization",
    "06_reproduction",
    "07_open_questions",
    "08_standard_transformer",
]
#: the explorer: the last entry of the Chapters part, after the chapters it draws on
EXPLORER = "explorer"
#: notebooks of the book's Reference part (after the chapters in the table of contents)
REFERENCE_NOTEBOOKS = ["performance", "errors"]
SYNC_HINT = "run `.venv/bin/python tools/sync_setup_cell.py` to fix"


def _load_yaml(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _read_nb(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ---------------------------------------------------------------- notebooks


def test_chapter_notebooks_exist():
    missing = [c for c in [*CHAPTERS, EXPLORER] if not (NOTEBOOK_DIR / f"{c}.ipynb").is_file()]
    assert not missing, f"chapter notebooks not written yet: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_valid_nbformat(path):
    nbformat.validate(_read_nb(path))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_committed_without_outputs(path):
    nb = _read_nb(path)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts; {SYNC_HINT}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_metadata(path):
    meta = _read_nb(path).metadata
    kernelspec = meta.get("kernelspec", {})
    assert kernelspec.get("name") == "python3", f"{path.name}: kernelspec; {SYNC_HINT}"
    assert kernelspec.get("language") == "python", f"{path.name}: kernelspec; {SYNC_HINT}"
    assert meta.get("colab", {}).get("name") == path.name, f"{path.name}: Colab name; {SYNC_HINT}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_first_code_cell_is_the_setup_cell(path):
    nb = _read_nb(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cell"
    assert code[0].source == SETUP_CELL, f"{path.name}: first code cell differs; {SYNC_HINT}"
    tags = code[0].metadata.get("tags", [])
    assert all(t in tags for t in SETUP_CELL_TAGS), f"{path.name}: tags {tags}; {SYNC_HINT}"


# ---------------------------------------------------------------- set-up cell


def test_setup_cell_installs_the_configured_repository_at_the_release_tag():
    config_url = _load_yaml("_config.yml")["repository"]["url"].rstrip("/")
    assert repository_url() == config_url
    urls = re.findall(r"git\+(https://[^\s\"'@]+)@([^\s\"']+)", SETUP_CELL)
    assert urls == [(config_url, RELEASE_TAG)]


def test_release_tag_matches_package_version():
    assert RELEASE_TAG == "v" + _pyproject()["project"]["version"]


def test_setup_cell_never_touches_torch_or_numpy():
    code = [line.split("#")[0] for line in SETUP_CELL.lower().splitlines()]
    lowered = "\n".join(code)
    for word in ("--upgrade", " -u ", "--force-reinstall", "torch", "numpy"):
        assert word not in lowered, f"the set-up cell must not contain {word!r}"
    assert "icl.config.mode_banner()" in SETUP_CELL
    compile(SETUP_CELL, "<setup cell>", "exec")


def test_setup_cell_is_a_noop_outside_colab(capsys):
    # Outside Colab the cell must not install anything: it only imports icl and prints.
    assert "google.colab" not in sys.modules
    exec(compile(SETUP_CELL, "<setup cell>", "exec"), {"__name__": "__setup_cell__"})
    assert capsys.readouterr().out.startswith("icl: ")


# ---------------------------------------------------------------- table of contents


def _toc_files(node) -> list[str]:
    found = []
    if isinstance(node, dict):
        for key in ("root", "file"):
            if key in node:
                found.append(str(node[key]))
        for value in node.values():
            if isinstance(value, (dict, list)):
                found += _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            found += _toc_files(item)
    return found


def _toc_target(entry: str) -> Path | None:
    path = ROOT / entry
    if path.suffix in {".md", ".ipynb"}:
        return path if path.is_file() else None
    for suffix in (".md", ".ipynb"):
        if path.with_suffix(suffix).is_file():
            return path.with_suffix(suffix)
    return None


def test_toc_entries_point_at_existing_files():
    # Jupyter Book silently drops missing toc entries (external_toc_exclude_missing).
    entries = _toc_files(_load_yaml("_toc.yml"))
    assert entries, "_toc.yml lists nothing"
    missing = [e for e in entries if _toc_target(e) is None]
    assert not missing, f"_toc.yml entries without a file: {missing}"


def test_every_notebook_is_in_the_toc():
    entries = _toc_files(_load_yaml("_toc.yml"))
    listed = {_toc_target(e) for e in entries} - {None}
    absent = [_rel(p) for p in NOTEBOOKS if p not in listed]
    assert not absent, f"not in _toc.yml (so only_build_toc_files drops them): {absent}"


def test_toc_lists_the_chapters_in_order():
    entries = _toc_files(_load_yaml("_toc.yml"))
    chapters = [e for e in entries if re.match(r"notebooks/\d", e)]
    assert chapters == [f"notebooks/{c}" for c in CHAPTERS]
    parts = _load_yaml("_toc.yml")["parts"]
    first = next(p for p in parts if p["caption"] == "Chapters")
    assert first["chapters"][-1]["file"] == f"notebooks/{EXPLORER}"
    reference = next(p for p in parts if p["caption"] == "Reference")
    listed = [c["file"] for c in reference["chapters"] if c["file"].startswith("notebooks/")]
    assert listed == [f"notebooks/{n}" for n in REFERENCE_NOTEBOOKS]


def test_related_results_part_follows_the_chapters():
    # notebooks/r<k>_*.ipynb are the related-results chapters, in their own part.
    parts = _load_yaml("_toc.yml")["parts"]
    captions = [p["caption"] for p in parts]
    related = sorted(p.stem for p in NOTEBOOKS if re.match(r"r\d", p.stem))
    if not related:
        return
    assert "Related results" in captions
    assert captions.index("Related results") == captions.index("Chapters") + 1
    part = parts[captions.index("Related results")]
    assert [c["file"] for c in part["chapters"]] == [f"notebooks/{r}" for r in related]


# ---------------------------------------------------------------- environments


def _names(requirements) -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in requirements]
    return {canonicalize_name(r.name): r for r in reqs}


def _environment_yml_pip() -> tuple[set[str], dict[str, Requirement], list[str]]:
    env = _load_yaml("environment.yml")
    conda, pip_lines = set(), []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_lines += dep.get("pip", [])
        else:
            conda.add(canonicalize_name(re.split(r"[=<>!~ ]", str(dep))[0]))
    options = [line for line in pip_lines if line.startswith("-") and not line.startswith("-e ")]
    local = [line for line in pip_lines if line.startswith("-e ") or line.startswith(".")]
    reqs = [line for line in pip_lines if line not in options and line not in local]
    return conda, _names(reqs), local


def test_environment_yml_agrees_with_pyproject():
    project = _pyproject()["project"]
    runtime = _names(project["dependencies"])
    book = _names(project["optional-dependencies"]["book"])
    wanted = {**runtime, **book}
    conda, pip, local = _environment_yml_pip()

    assert conda <= {"python", "pip"}, f"conda packages not in pyproject: {conda}"
    assert set(pip) == set(wanted), (
        f"missing from environment.yml: {sorted(set(wanted) - set(pip))}; "
        f"unknown to pyproject: {sorted(set(pip) - set(wanted))}"
    )
    # Same ranges, except torch, which Binder pins to a CPU build.
    for name, req in pip.items():
        if name != "torch":
            assert req.specifier == wanted[name].specifier, f"{name}: {req} vs {wanted[name]}"
    assert any(s.version for s in pip["torch"].specifier), "pin torch on Binder"
    for spec in pip["torch"].specifier:
        assert wanted["torch"].specifier.contains(spec.version), "Binder torch outside range"
    # repo2docker installs environment.yml before copying the repository: a local
    # requirement there would fail. postBuild installs icl instead (next test).
    assert not local, f"local requirements break Binder builds: {local}"


def test_binder_post_build_installs_icl():
    path = ROOT / "postBuild"
    assert path.exists(), "postBuild must install the icl package on Binder"
    assert os.access(path, os.X_OK), "postBuild must be executable"
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    assert lines[0].startswith("#!"), "postBuild needs a shebang"
    assert "python -m pip install --no-deps -e ." in lines


def test_environment_yml_python_is_supported():
    env = _load_yaml("environment.yml")
    pythons = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert pythons == ["python=3.11"]
    assert _pyproject()["project"]["requires-python"] == ">=3.10"


def test_runtime_dependencies_are_ranges_not_pins():
    # Exact pins break Colab (d2l and ARENA issues): the package asks only for ranges.
    for req in _pyproject()["project"]["dependencies"]:
        assert "==" not in req, f"{req}: use a range"


# ---------------------------------------------------------------- book config


def test_config_execution_keys():
    config = _load_yaml("_config.yml")
    execute = config["execute"]
    assert execute["execute_notebooks"] == "force"
    assert execute["allow_errors"] is False
    assert execute["raise_on_error"] is True
    assert execute["show_tb"] is True
    assert isinstance(execute["timeout"], int) and execute["timeout"] > 0
    assert config["only_build_toc_files"] is True


def test_config_book_features():
    config = _load_yaml("_config.yml")
    assert config["repository"]["branch"] == "main"
    assert config["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["html"]["use_repository_button"] and config["html"]["use_issues_button"]
    assert "sphinx_exercise" in config["sphinx"]["extra_extensions"]
    for bib in config["bibtex_bibfiles"]:
        assert (ROOT / bib).is_file(), bib


def test_repository_url_lives_in_one_place():
    # Only _config.yml spells the repository URL among the config files; the set-up cell
    # gets it from there.
    url = _load_yaml("_config.yml")["repository"]["url"]
    for name in ("pyproject.toml", "environment.yml", "tools/setup_cell.py"):
        assert url not in (ROOT / name).read_text(encoding="utf-8"), name


def test_icl_is_the_repository_package():
    import icl

    assert Path(icl.__file__).resolve().parent == ROOT / "icl"
