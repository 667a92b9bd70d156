"""tools/offline_book.py: the configuration of the offline build (no build is run here;
tests/test_browser.py builds two pages and opens them in Chromium)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tools import offline_book

ROOT = Path(__file__).resolve().parent.parent


def test_offline_config_serves_mathjax_from_the_site(tmp_path):
    config = offline_book.offline_config(tmp_path)
    sphinx = config["sphinx"]["config"]
    assert sphinx["mathjax_path"] == "mathjax/tex-mml-chtml.js"  # relative: under _static/
    assert "://" not in sphinx["mathjax_path"]
    assert sphinx["html_static_path"] == [str(tmp_path)]
    assert sphinx["nb_ipywidgets_js"] == {}
    assert all(Path(b).is_absolute() and Path(b).is_file() for b in config["bibtex_bibfiles"])
    # everything else is the book's own configuration; the published one keeps its CDN
    book = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["execute"] == book["execute"]
    assert "mathjax_path" not in book["sphinx"]["config"]


def test_pages_toc():
    toc = offline_book.pages_toc(["notebooks/03_optimal_transformer", "notebooks/explorer"])
    assert toc["root"] == "notebooks/03_optimal_transformer"
    assert [c["file"] for c in toc["chapters"]] == ["notebooks/explorer", "book/references"]


def test_missing_mathjax_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.delenv("ICL_MATHJAX_DIR", raising=False)
    monkeypatch.setattr(offline_book, "NPM_PREFIX", tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="npm install --prefix .* mathjax@3"):
        offline_book.find_mathjax(install=False)
    with pytest.raises(FileNotFoundError, match="holds no tex-mml-chtml.js"):
        offline_book.find_mathjax(tmp_path)
    (tmp_path / "tex-mml-chtml.js").write_text("// MathJax", encoding="utf-8")
    monkeypatch.setenv("ICL_MATHJAX_DIR", str(tmp_path))
    assert offline_book.find_mathjax() == tmp_path


def test_unknown_page_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ICL_MATHJAX_DIR", str(tmp_path))
    (tmp_path / "tex-mml-chtml.js").write_text("// MathJax", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="no notebooks/nope.ipynb"):
        offline_book.build(tmp_path / "out", ["notebooks/nope"])
