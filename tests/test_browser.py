"""The built book in a real browser: the chair page loads offline and typesets its formula; every
page fits the column at 1280 px, with its figures loaded and no raw markup; the first page shows
the findings.

Needs the HTML book (``make test`` builds it first) and Debian's ``chromium`` (``.ci/run`` installs it).
"""

from __future__ import annotations

import functools
import os
import http.server
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHAIRS_PAGE = HTML / "book" / "01_chairs.html"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server():
    if not CHAIRS_PAGE.exists():
        pytest.fail(f"{CHAIRS_PAGE} is missing: build the book first (`make test` does it)")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail("Chromium is missing: install Debian's `chromium` package (.ci/run does)")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def chairs_page(server, browser):
    requests: list[str] = []
    page = browser.new_page()
    page.on("request", lambda request: requests.append(request.url))
    # refuse anything that is not the local server, so a remote asset fails visibly
    page.route("**/*", lambda route: route.continue_()
               if urlparse(route.request.url).hostname == "127.0.0.1" else route.abort())
    page.goto(f"{server}/book/01_chairs.html", wait_until="networkidle")
    page.wait_for_function("() => document.querySelectorAll('mjx-container').length > 0",
                           timeout=20_000)
    yield page, requests
    page.close()


def test_no_request_leaves_the_machine(chairs_page):
    _, requests = chairs_page
    remote = [url for url in requests if urlparse(url).hostname != "127.0.0.1"]
    assert requests, "the browser made no request at all"
    assert remote == []


def test_the_figure_image_loaded(chairs_page):
    page, _ = chairs_page
    sizes = page.eval_on_selector_all(
        "figure img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
    assert sizes, "no figure image on the chair page"
    assert all(complete and width > 100 for complete, width in sizes), sizes


def test_mathjax_typeset_the_formula(chairs_page):
    page, _ = chairs_page
    assert page.locator("mjx-container").count() >= 1
    text = page.inner_text("main")
    assert "\\frac" not in text and "$$" not in text and "\\hat" not in text


def test_glued_numbers_are_in_the_text(chairs_page):
    page, _ = chairs_page
    text = page.inner_text("main")
    assert "slope of 5.09 cm per kg" in text
    assert "{glue" not in text


# Every page of the book, read at a laptop's width: nothing clipped, nothing unrendered.
WIDTH = 1280
PAGES = sorted(p.stem for p in (ROOT / "book").glob("*.ipynb"))
#: where to save screenshots of the first page and a section page (none when unset)
SHOTS = os.environ.get("INFCORE_SHOTS")
RAW = ["{glue", "$$", "Traceback (most recent call last)", "urlopen error"]


def _open(browser, server, stem):
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    page.route("**/*", lambda route: route.continue_()
               if urlparse(route.request.url).hostname == "127.0.0.1" else route.abort())
    page.goto(f"{server}/book/{stem}.html", wait_until="networkidle")
    return page


# the right edge of every element of the main column, against the column's own (elements inside
# a scrolling box, such as a code cell's source, are clipped by it, not by the column); and every
# table or printed output that would need scrolling to be read
_OVERFLOW = """() => {
  const main = document.querySelector('main') || document.body;
  const column = main.querySelector('article') || main;
  const right = column.getBoundingClientRect().right + 1;
  const out = [];
  for (const el of column.querySelectorAll('*')) {
    let box = el.parentElement, scrolled = false;
    while (box && box !== column) {
      const style = getComputedStyle(box);
      if (['auto', 'scroll', 'hidden'].includes(style.overflowX)) { scrolled = true; break; }
      box = box.parentElement;
    }
    const r = el.getBoundingClientRect();
    if (!scrolled && r.width > 0 && r.right > right)
      out.push(el.tagName + '.' + el.className + ' ' + Math.round(r.right) + ' > ' + Math.round(right));
  }
  const wide = [];
  const outputs = column.querySelectorAll('table, .cell_output, .cell_output *');
  for (const el of outputs) {
    if (el.scrollWidth > el.clientWidth + 1 && el.offsetParent !== null)
      wide.push(el.tagName + ' ' + el.scrollWidth + ' > ' + el.clientWidth + ': '
                + el.innerText.slice(0, 60));
  }
  return {out: out.slice(0, 10), wide: wide.slice(0, 10)};
}"""


@pytest.mark.parametrize("stem", PAGES)
def test_page_fits_the_column_and_is_rendered(browser, server, stem):
    page = _open(browser, server, stem)
    try:
        found = page.evaluate(_OVERFLOW)
        assert found["out"] == [], f"{stem}: elements wider than the main column: {found['out']}"
        assert found["wide"] == [], f"{stem}: outputs that must be scrolled: {found['wide']}"
        images = page.eval_on_selector_all(
            "main img", "imgs => imgs.map(i => [i.src, i.complete, i.naturalWidth])")
        assert all(complete and width > 0 for _, complete, width in images), images
        text = page.inner_text("main")
        assert [raw for raw in RAW if raw in text] == [], stem
    finally:
        page.close()


def test_the_first_page_shows_the_findings(browser, server):
    page = _open(browser, server, "intro")
    try:
        headers = page.eval_on_selector_all(
            "main table thead th", "ths => ths.map(th => th.innerText.trim())")
        assert {"paper's numbers", "quick run", "paper-scale run", "comnist"} <= set(headers), headers
        rows = page.locator("main table").first.locator("tbody tr").count()
        assert rows >= 7
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(SHOTS) / "intro.png"), full_page=True)
    finally:
        page.close()


def test_a_section_page_opens_with_the_paper_scale(browser, server):
    page = _open(browser, server, "02_instability")
    try:
        text = page.inner_text("main").replace("\u2019", "'")  # Sphinx's typographic apostrophes
        assert text.index("At the paper's scale") < text.index("Re-run live")
        assert "paper-scale run: 800 / 200 images, 4 seeds" in text
        assert "quick run: 100 / 20 images, 3 seeds" in text
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(SHOTS) / "02_instability.png"), full_page=True)
    finally:
        page.close()
