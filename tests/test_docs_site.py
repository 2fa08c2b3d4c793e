"""The documentation site (mkdocs.yml, docs/): it builds with ``mkdocs build --strict`` (a broken link or
anchor, a page missing from the navigation, a docstring the API reference cannot read fail the build), every
public name has an entry in the API reference, and the built site renders in headless Chromium."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zlib
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from test_public_api import PUBLIC_MODULES, public_names

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    """The site built once for this module: its folder, the build's exit status, output and seconds."""
    out = tmp_path_factory.mktemp("site")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                           "--site-dir", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    return {"dir": out, "returncode": done.returncode, "output": done.stdout + done.stderr,
            "seconds": time.perf_counter() - start}


def test_the_site_builds_in_strict_mode(site):
    assert site["returncode"] == 0, (f"mkdocs build --strict failed after {site['seconds']:.0f} s (the tools: "
                                     f'pip install -e ".[dev]"):\n{site["output"]}')
    assert (site["dir"] / "index.html").is_file() and (site["dir"] / "api" / "environments" / "index.html").is_file()


def inventory(path: Path) -> set[str]:
    """The object names of a Sphinx-style ``objects.inv`` (what mkdocstrings writes: 4 header lines, then zlib)."""
    header, _, body = path.read_bytes().partition(b"compressed using zlib.\n")
    assert header.startswith(b"# Sphinx inventory version 2"), header[:60]
    return {line.split(" ", 1)[0] for line in zlib.decompress(body).decode().splitlines() if line}


def test_every_public_name_has_an_entry_in_the_built_api_reference(site):
    assert site["returncode"] == 0, site["output"]
    names = inventory(site["dir"] / "objects.inv")
    expected = {f"{module_name}.{name}" for module_name in PUBLIC_MODULES for name in public_names(module_name)}
    assert sorted(expected - names) == []


class _Page(HTMLParser):
    """What a rendered page shows: its title, the ``<html>`` classes, the navigation's labels and the ids of
    the API reference's headings."""

    def __init__(self) -> None:
        super().__init__()
        self.title, self.html_classes, self.nav, self.doc_headings = "", set(), set(), set()
        self._in_title = False
        self._nav_depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        if tag == "html":
            self.html_classes = classes
        elif tag == "title":
            self._in_title = True
        elif tag == "nav" or self._nav_depth:
            self._nav_depth += 1
        if "doc-heading" in classes and attrs.get("id"):
            self.doc_headings.add(attrs["id"])

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif self._nav_depth:
            self._nav_depth -= 1

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif self._nav_depth and data.strip():
            self.nav.add(data.strip())


class _Handler(SimpleHTTPRequestHandler):
    statuses: list[tuple[str, int]]

    def log_request(self, code="-", size="-"):
        self.statuses.append((self.path, int(code)))

    def log_message(self, format, *args):  # keep the test output quiet
        pass


def rendered(url: str, profile: Path) -> _Page:
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--no-first-run", f"--user-data-dir={profile}", "--dump-dom", url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    page = _Page()
    page.feed(done.stdout)
    return page


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_the_home_page_and_an_api_page_render_in_headless_chromium(site, tmp_path):
    assert site["returncode"] == 0, site["output"]
    statuses: list[tuple[str, int]] = []
    handler = type("Handler", (_Handler,), {"statuses": statuses})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(site["dir"])))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        home = rendered(f"{base}/", tmp_path / "profile")
        api = rendered(f"{base}/api/environments/", tmp_path / "profile")
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()

    for page in (home, api):
        assert "js" in page.html_classes and "no-js" not in page.html_classes  # the theme's script ran
        assert {"Quickstart", "Your data", "The environment", "Training", "API reference"} <= page.nav, page.nav
    assert home.title.strip() == "sr3"
    assert api.title.strip() == "Environments - sr3"
    assert {"sr3_env.RetrievalEmbedEnv", "sr3_env.RetrievalRefineVectorEnv", "sr3_env.RocchioPolicy"} <= api.doc_headings
    assert any(re.search(r"\.css$", path) for path, _ in statuses) and any(path.endswith(".js") for path, _ in statuses)
    assert [(path, status) for path, status in statuses if status >= 400] == []  # every asset the pages asked for exists
