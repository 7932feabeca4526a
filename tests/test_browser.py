"""The built chair page in a real browser: the figure loads, MathJax typesets, nothing leaves the machine.

Needs the HTML book (``make test`` builds it first) and Debian's ``chromium`` (``.ci/run`` installs it).
"""

from __future__ import annotations

import functools
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
def chairs_page(server):
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail("Chromium is missing: install Debian's `chromium` package (.ci/run does)")
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page()
        page.on("request", lambda request: requests.append(request.url))
        # refuse anything that is not the local server, so a remote asset fails visibly
        page.route("**/*", lambda route: route.continue_()
                   if urlparse(route.request.url).hostname == "127.0.0.1" else route.abort())
        page.goto(f"{server}/book/01_chairs.html", wait_until="networkidle")
        page.wait_for_function("() => document.querySelectorAll('mjx-container').length > 0",
                               timeout=20_000)
        yield page, requests
        browser.close()


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
