"""What publishing needs: licences, citation, workflows that only call tested commands,
and the release check."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tools.release_check import main as release_check
from tools.setup_cell import package_version, repository_url

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_licences_are_stated_everywhere():
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    content = (ROOT / "LICENSE-CONTENT.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in content and "not reproduce" in content
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT AND CC-BY-4.0"
    assert set(project["license-files"]) == {"LICENSE", "LICENSE-CONTENT.md"}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "MIT" in readme and "CC BY 4.0" in readme
    footer = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["html"]
    assert "CC BY 4.0" in footer["extra_footer"] and "MIT" in footer["extra_footer"]


def test_citation_file_matches_the_package():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0"
    assert str(cff["version"]) == package_version()
    assert cff["repository-code"] == repository_url()
    assert any("2505.15009" in str(r.get("url", "")) for r in cff["references"])


def _bib_entries(text: str) -> dict[str, str]:
    """BibTeX entries by key, whitespace folded."""
    out = {}
    for m in re.finditer(r"@\w+\{([^,]+),(.*?)\n\}", text, re.S):
        out[m.group(1).strip()] = " ".join(m.group(0).split())
    return out


def test_how_to_cite_page_copies_the_bibliography():
    bib = _bib_entries((ROOT / "book" / "references.bib").read_text(encoding="utf-8"))
    page = (ROOT / "book" / "citing.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bibtex\n(.*?)```", page, re.S)
    assert len(blocks) == 2
    for block in blocks:
        ((key, entry),) = _bib_entries(block).items()
        bib_entry = bib[key]
        # every field of the page's entry is in the bibliography's entry
        for field in re.findall(r"(\w+\s*=\s*\{.*?\}),?\s*(?=\w+\s*=|\}$)", entry):
            assert " ".join(field.split()) in bib_entry, (key, field)


@pytest.mark.skipif(
    shutil.which("check-jsonschema") is None
    and not (Path(sys.executable).parent / "check-jsonschema").exists(),
    reason="check-jsonschema is not installed (pip install -e .[test])",
)
def test_workflows_are_valid_github_actions():
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    proc = subprocess.run(
        [exe, "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflows_only_call_make_targets_that_exist():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    names = {p.stem for p in WORKFLOWS}
    assert {"test", "book", "weekly", "links"} <= names
    for path in WORKFLOWS:
        flow = yaml.safe_load(path.read_text(encoding="utf-8"))
        for job in flow["jobs"].values():
            for step in job.get("steps", []):
                run = step.get("run")
                if run is None:
                    continue
                words = run.split()
                if words[0] == "gh":  # the weekly workflow's issue on failure
                    continue
                assert words[0] == "make", f"{path.name}: {run!r} is not a make target"
                assert words[1] in targets, f"{path.name}: no make target {words[1]!r}"


def test_the_readme_test_command_is_what_ci_runs():
    flow = yaml.safe_load((ROOT / ".github/workflows/test.yml").read_text(encoding="utf-8"))
    runs = [s["run"] for s in flow["jobs"]["test"]["steps"] if "run" in s]
    assert runs and runs[0].startswith("make test")
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_release_check_passes_for_the_right_tag_and_fails_for_a_wrong_one(capsys):
    version = package_version()
    assert release_check(["--no-build", "--tag", f"v{version}"]) == 0
    assert release_check(["--no-build", "--tag", "v99.0.0"]) == 1
    assert "FAIL tag" in capsys.readouterr().out


def test_api_reference_lists_every_module():
    """book/api.md documents every module of the recall package (related-results
    subpackages have their own section there too)."""
    page = (ROOT / "book" / "api.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"\.\. automodule:: (icl[\w.]*)", page))
    modules = set()
    for path in (ROOT / "icl").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
            if len(parts) > 1:  # a subpackage's __init__: documented by its modules
                continue
        modules.add(".".join(parts))
    missing = sorted(modules - listed)
    assert not missing, f"add these modules to book/api.md: {missing}"


def test_a_plain_install_carries_every_subpackage():
    """Colab installs the package from a tag, not editable: setuptools must find every
    folder of ``icl`` (``icl.viz``, ``icl.symbolic``, ``icl.lsa``, ...)."""
    import setuptools

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    found = set(setuptools.find_packages(where=str(ROOT), include=include))
    folders = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "icl").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert folders <= found, f"not packaged: {sorted(folders - found)}"
    assert all(f.startswith("icl") for f in found)


def _make_variable(makefile: str, name: str) -> str:
    """The value of ``name := ...`` in the Makefile, continuation lines joined."""
    m = re.search(rf"^{name} :=((?:.*\\\n)*.*)$", makefile, re.M)
    assert m, f"no {name} in the Makefile"
    return " ".join(m.group(1).replace("\\\n", " ").split())


def test_pdf_target_matches_the_latex_settings_and_stays_out_of_the_tests():
    """`make pdf` writes the file _config.yml names; the README lists the TeX packages that
    `make pdf-deps` installs; neither `make test` nor the test workflow needs TeX."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    name = _make_variable(makefile, "PDF_NAME")
    assert config["latex"]["latex_documents"]["targetname"] == f"{name}.tex"
    assert config["latex"]["latex_engine"] == "xelatex"
    for extra in config["sphinx"]["config"]["latex_additional_files"]:
        assert (ROOT / extra).is_file(), extra
    recipe = re.search(r"^pdf: .*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "--builder pdflatex" in recipe and "_build/latex/$(PDF_NAME).pdf" in recipe
    test_recipe = re.search(r"^test: .*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "pdf" not in test_recipe
    flow = (ROOT / ".github/workflows/test.yml").read_text(encoding="utf-8")
    assert "make pdf" not in flow
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    for package in _make_variable(makefile, "PDF_DEBIAN_PACKAGES").split():
        assert package in readme, f"README: name the Debian package {package}"
    assert f"_build/latex/{name}.pdf" in readme


@pytest.mark.skipif(shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) is None,
                    reason="jupyter-book is not installed (pip install -e '.[book]')")
def test_book_builds_nitpicky_without_executing(tmp_path):
    """`make book` builds with -W -n: a docstring that Sphinx cannot parse, or a broken
    cross-reference, fails it after every notebook has run (twice, on this project). The
    same build with execution off finds those in under a minute."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    config["execute"]["execute_notebooks"] = "off"
    config["bibtex_bibfiles"] = [str(ROOT / b) for b in config.get("bibtex_bibfiles", [])]
    config_path = tmp_path / "_config.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(ROOT),
           "--config", str(config_path), "--path-output", str(tmp_path),
           "--all", "-W", "-n", "--keep-going"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    problems = [line for line in (res.stdout + res.stderr).splitlines()
                if "WARNING" in line or "ERROR" in line]
    assert res.returncode == 0 and not problems, "\n".join(problems[-20:]) or res.stdout[-2000:]
