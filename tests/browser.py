"""Browser tests: the web app in a real server thread, Debian's Chromium driven by Playwright.

Registered as a plugin in ``conftest.py`` (``pytest_plugins = ["browser"]``), so
these fixtures are there for every test module:

- ``live_server`` — ``create_app(config)`` served by werkzeug on a free port, with
  the demo users' passwords (:class:`LiveServer`);
- ``chromium`` — Debian's ``/usr/bin/chromium`` launched once per session through
  the Python ``playwright`` package (never a downloaded browser; without it the
  test is skipped, or fails on CI);
- ``watched`` — a fresh browser context and page per test (:class:`WatchedPage`)
  that records console errors, uncaught exceptions, failed requests and HTTP
  error responses, so a test can assert that nothing went wrong, and saves
  screenshots under the test's ``tmp_path`` or ``$TELERAD_SCREENSHOTS``.

Browser tests never sleep: Playwright's locators and ``expect`` wait by themselves.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
from flask import Flask
from sqlalchemy.orm import sessionmaker
from werkzeug.serving import make_server

from conftest import free_port, require
from telerad.config import Config

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


@dataclass
class LiveServer:
    """The web app listening on ``url``; ``passwords`` holds the demo users' generated passwords."""

    url: str
    app: Flask
    passwords: dict[str, str]


def demo_passwords(config: Config) -> dict[str, str]:
    """The passwords ``prepare`` generated for the demo users (``demo-passwords.txt``, last one wins)."""
    lines = (config.data_dir / "demo-passwords.txt").read_text(encoding="utf-8").splitlines()
    return dict(line.split("\t", 1) for line in lines if "\t" in line)


@pytest.fixture
def live_server(config: Config, sessions: sessionmaker) -> Iterator[LiveServer]:
    """``create_app(config)`` in a threaded werkzeug server on 127.0.0.1 and a free port."""
    from telerad.web import create_app

    app = create_app(config)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield LiveServer(f"http://127.0.0.1:{port}", app, demo_passwords(config))
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, for the whole session."""
    if not CHROMIUM.is_file():
        require(f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require("the Python package playwright is not installed (pip install -e .[dev])")
    with sync_playwright() as playwright:
        from playwright.sync_api import expect

        expect.set_options(timeout=30_000)
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass(frozen=True)
class Problem:
    """Something that went wrong in the page: ``kind`` is console, pageerror, requestfailed or http."""

    kind: str
    text: str
    url: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.text}" + (f" ({self.url})" if self.url else "")


@dataclass
class WatchedPage:
    """A page in a fresh context that records what went wrong, and takes screenshots."""

    page: Page
    screenshots: Path
    prefix: str
    problems: list[Problem] = field(default_factory=list)
    shots: list[Path] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        """Record the problems of ``page`` (done for every page the context opens)."""
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(Problem("pageerror", str(error))))
        page.on("requestfailed", self._request_failed)
        page.on("response", self._response)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(Problem("console", message.text, message.location.get("url", "")))

    def _request_failed(self, request: Request) -> None:
        self.problems.append(Problem("requestfailed", f"{request.method} {request.failure}", request.url))

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.problems.append(Problem("http", f"{response.request.method} {response.status}", response.url))

    def screenshot(self, name: str, **options: object) -> Path:
        """Save a PNG of the page as ``<test>-<name>.png`` and return its path."""
        path = self.screenshots / f"{self.prefix}-{name}.png"
        self.page.screenshot(path=str(path), **options)
        self.shots.append(path)
        return path

    def unexpected(self, ignore: Iterable[str] = ()) -> list[Problem]:
        """The problems whose text or URL matches none of the ``ignore`` regular expressions."""
        patterns = [re.compile(pattern) for pattern in ignore]
        return [
            problem for problem in self.problems
            if not any(pattern.search(problem.text) or pattern.search(problem.url) for pattern in patterns)
        ]

    def assert_clean(self, ignore: Iterable[str] = ()) -> None:
        """Fail listing every console error, exception, failed request or HTTP error not ignored."""
        left = self.unexpected(ignore)
        assert not left, "the page reported problems:\n" + "\n".join(map(str, left))


def screenshot_folder(tmp_path: Path) -> Path:
    """``$TELERAD_SCREENSHOTS`` when set (created if need be), else the test's ``tmp_path``."""
    folder = Path(os.environ.get("TELERAD_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def watched(chromium: Browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WatchedPage]:
    """A page of a fresh browser context (no cookies, no storage) that records problems."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    context.set_default_timeout(30_000)
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    watched = WatchedPage(context.new_page(), screenshot_folder(tmp_path), prefix)
    watched.watch(watched.page)
    context.on("page", lambda page: page is watched.page or watched.watch(page))
    yield watched
    if request.node.stash.get(_FAILED, False):
        watched.screenshot("failed")
        print("problems the page reported:", *watched.problems, sep="\n  ")
        print("screenshots:", *watched.shots, sep="\n  ")
    context.close()


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    """Remember whether a test's call failed, so ``watched`` can keep a screenshot and list the problems."""
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True
    return report


def sign_in(page: Page, base_url: str, name: str, password: str, next_path: str | None = None) -> None:
    """Sign in through the real form (``/login``), then wait until the browser has left it."""
    from playwright.sync_api import expect

    page.goto(f"{base_url}/login" + (f"?next={quote(next_path, safe='/')}" if next_path else ""))
    page.locator("#name").fill(name)
    page.locator("#password").fill(password)
    page.locator("form button[type=submit]").click()
    expect(page).not_to_have_url(re.compile(r"/login(\?|$)"))
