"""The built HTML of one chapter and of the explorer, opened in headless Chromium.

Off unless ``ICL_BROWSER_TEST=1`` (``.ci/run`` sets it after installing Debian's
``chromium`` and ``chromium-driver``): it builds two pages (a few minutes on a loaded
2-core machine) and needs a browser, which a laptop may not have. When it is on, a missing
browser, driver or Selenium is a failure, not a skip.

The pages are built by ``tools/offline_book.py`` in test mode, with MathJax 3 from a local
copy (npm's ``mathjax@3``), and Chromium resolves no host name: the test sees what a reader
without a network connection sees. ``ICL_BROWSER_HTML=<folder>`` reuses a site built
before (the ``_build/html`` folder of ``tools/offline_book.py --pages ...``). For each page:

* the mathematics is typeset: MathJax has finished, its output elements are there, and
  no raw TeX (``$$``, ``\\(``, ``\\[``, a ``\\command``) is left in the visible prose;
* every ``<img>`` has loaded (``naturalWidth > 0``);
* the launch buttons (Binder, Colab) are on the page;
* the browser logged no error (a script error, a failed resource, a network request).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

ENV_VAR = "ICL_BROWSER_TEST"
CHROMIUM = os.environ.get("ICL_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ICL_CHROMEDRIVER", "/usr/bin/chromedriver")
PAGES = ["notebooks/03_optimal_transformer", "notebooks/explorer"]
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1280,900",
    # no network: every host name fails to resolve, as on CI (file:// pages need none)
    "--host-resolver-rules=MAP * ~NOTFOUND",
]
MATHJAX_TIMEOUT = 60  # seconds for MathJax to typeset one page
#: console errors of the book's tooling itself, harmless to a reader, each with its reason
KNOWN_ERRORS = {
    # sphinx-thebe 0.3.1 under Sphinx 7 writes its inline configuration script twice into
    # every page of every Jupyter Book 1 site (seen in a one-page book with the default
    # configuration): the second `const` declaration fails, the first stands. The book
    # does not use Thebe.
    "Identifier 'THEBE_JS_URL' has already been declared",
    # pydata-sphinx-theme on the first page of a fresh browser profile: no colour mode
    # stored yet, so it logs this and uses "auto".
    "Got invalid theme mode: . Resetting to auto.",
}

pytestmark = pytest.mark.skipif(
    os.environ.get(ENV_VAR) != "1",
    reason=(
        f"browser test off: set {ENV_VAR}=1 to run it (needs Chromium and chromedriver, "
        "Debian packages chromium and chromium-driver, and npm for MathJax; .ci/run "
        "installs them and sets it)"
    ),
)

# visible prose (code and outputs excluded) with raw TeX left in it
RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\[A-Za-z]{2,}")

VISIBLE_PROSE_JS = """
const out = [];
const walker = document.createTreeWalker(document.querySelector('main') || document.body,
                                         NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const el = walker.currentNode.parentElement;
  if (!el || el.closest('pre, code, script, style, mjx-container, .highlight')) continue;
  if (el.getClientRects().length === 0) continue;  // not rendered
  out.push(walker.currentNode.textContent);
}
return out.join(' ');
"""

WAIT_MATHJAX_JS = """
const done = arguments[arguments.length - 1];
const start = Date.now();
(function poll() {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    mj.startup.promise.then(() => done('ok'), (e) => done('error: ' + e));
  } else if (Date.now() - start > 30000) {
    done('MathJax never started: ' + (document.querySelector('script[src*=mathjax]') ?
         document.querySelector('script[src*=mathjax]').src : 'no MathJax script'));
  } else {
    setTimeout(poll, 100);
  }
})();
"""

IMAGES_JS = """
return Array.from(document.images).map(
  (img) => [img.getAttribute('src'), img.complete, img.naturalWidth]);
"""


def _require_browser():
    """Selenium, Chromium and chromedriver, or a failure that says what is missing."""
    try:
        from selenium import webdriver
    except ImportError:
        pytest.fail(f"{ENV_VAR}=1 but Selenium is missing: pip install -e '.[test]'")
    for name, path in (("Chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)):
        if not Path(path).is_file():
            pytest.fail(
                f"{ENV_VAR}=1 but {name} is not at {path}: apt-get install -y chromium "
                "chromium-driver (or set ICL_CHROMIUM / ICL_CHROMEDRIVER)"
            )
    return webdriver


@pytest.fixture(scope="module")
def site():
    """The folder of the built HTML: reused from ``ICL_BROWSER_HTML``, or built now."""
    reuse = os.environ.get("ICL_BROWSER_HTML")
    if reuse:
        html = Path(reuse)
        if not all((html / f"{p}.html").is_file() for p in PAGES):
            pytest.fail(f"ICL_BROWSER_HTML={reuse} lacks one of {PAGES} (.html)")
        yield html
        return
    from tools import offline_book

    out = Path(tempfile.mkdtemp(prefix="icl-browser-book-"))
    try:
        yield offline_book.build(out, PAGES, test_mode=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    webdriver = _require_browser()
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="icl-chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_script_timeout(MATHJAX_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open(driver, site: Path, page: str) -> list[dict]:
    """Load ``page`` and wait for MathJax; return the browser log of that load."""
    driver.get_log("browser")  # drop what an earlier page logged
    driver.get((site / f"{page}.html").resolve().as_uri())
    status = driver.execute_async_script(WAIT_MATHJAX_JS)
    assert status == "ok", f"{page}: {status}"
    return driver.get_log("browser")


def _problems(driver, site: Path, page: str) -> list[str]:
    """What is wrong with ``page`` as the browser shows it (an empty list: nothing)."""
    log = _open(driver, site, page)
    problems = []

    typeset = driver.execute_script("return document.querySelectorAll('mjx-container').length")
    sources = driver.execute_script(
        "return document.querySelectorAll('.math, span.math, div.math').length"
    )
    if typeset == 0 or typeset < sources:
        problems.append(f"MathJax output: {typeset} mjx-container for {sources} formulas")
    raw = sorted(set(RAW_TEX.findall(driver.execute_script(VISIBLE_PROSE_JS))))
    if raw:
        problems.append(f"raw TeX left in the visible text: {raw}")

    images = driver.execute_script(IMAGES_JS)
    figures = [src for src, _, _ in images if "_images/" in (src or "")]
    if not figures:
        problems.append("no figure on the page")
    broken = [src for src, complete, width in images if not complete or width == 0]
    if broken:
        problems.append(f"images that did not load: {broken}")

    for host in ("mybinder.org", "colab.research.google.com"):
        links = driver.execute_script(
            "return document.querySelectorAll(arguments[0]).length", f'a[href*="{host}"]'
        )
        if not links:
            problems.append(f"no launch button to {host}")
    if not driver.execute_script("return !!document.querySelector('.dropdown-launch-buttons')"):
        problems.append("no launch-button menu in the header")

    errors = [
        entry for entry in log
        if entry.get("level") == "SEVERE" and not any(k in entry["message"] for k in KNOWN_ERRORS)
    ]
    if errors:
        problems.append(f"JavaScript errors: {[e['message'] for e in errors]}")
    return problems


def test_pages_render_offline_in_chromium(site, browser):
    # one test for both pages: under pytest-xdist two tests could land on two workers and
    # build the pages twice
    report = {page: _problems(browser, site, page) for page in PAGES}
    bad = {page: p for page, p in report.items() if p}
    assert not bad, "\n".join(f"{page}:\n  " + "\n  ".join(p) for page, p in bad.items())
