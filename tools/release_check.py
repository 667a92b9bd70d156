"""Check what a release of the book needs (``make release-check``).

A release is the git tag ``v<version>`` (the version's only home is ``pyproject.toml``):
the notebooks' Colab set-up cell installs exactly that tag, so it must exist before
Colab readers can run the chapters. This script checks, and prints one line per check:

1. the tag: ``--tag`` (or the tag on HEAD, if any) equals ``v`` + the version;
2. the set-up cell of every notebook installs that tag, and notebooks carry no outputs
   (``tools/sync_setup_cell.py --check``);
3. ``CHANGELOG.md`` has a section for the version, or an "Unreleased" one to rename;
   ``CITATION.cff`` states the version;
4. both README commands are green: ``make test`` and ``make book`` (skip them with
   ``--no-build`` for a quick look).

Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.setup_cell import RELEASE_TAG, package_version  # noqa: E402


def _run(cmd: list[str]) -> tuple[bool, str]:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip().splitlines()[-1:]


def head_tag() -> str | None:
    """The ``v*`` tag pointing at HEAD, if any."""
    proc = subprocess.run(
        ["git", "tag", "--points-at", "HEAD", "--list", "v*"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    tags = proc.stdout.split()
    return tags[0] if tags else None


def checks(tag: str | None, build: bool) -> list[tuple[str, bool, str]]:
    version = package_version()
    out: list[tuple[str, bool, str]] = []
    tag = tag or head_tag()
    if tag is None:
        out.append(("tag", False, f"no v* tag on HEAD; pass --tag v{version} to check a plan"))
    else:
        out.append(("tag", tag == f"v{version}", f"{tag} vs v{version} (pyproject.toml)"))
    out.append(("set-up cell tag", RELEASE_TAG == f"v{version}", RELEASE_TAG))
    ok, msg = _run([sys.executable, "tools/sync_setup_cell.py", "--check"])
    out.append(("notebooks stripped, set-up cells current", ok, " ".join(msg)))
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    has = f"## {version}" in changelog
    out.append(("CHANGELOG.md", has, f"section '## {version}'" + ("" if has else " missing")))
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    out.append(("CITATION.cff", str(cff.get("version")) == version, str(cff.get("version"))))
    if build:
        for target in ("test", "book"):
            ok, msg = _run(["make", target])
            out.append((f"make {target}", ok, " ".join(msg)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", help="the tag to check (default: the v* tag on HEAD)")
    parser.add_argument("--no-build", action="store_true", help="skip make test and make book")
    args = parser.parse_args(argv)
    results = checks(args.tag, build=not args.no_build)
    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
