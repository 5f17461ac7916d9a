"""A browser's view of the web app through Flask's test client: signed in through the real /login form.

Registered as a plugin in ``conftest.py``: the fixtures ``passwords`` (the demo users' generated passwords)
and ``browser`` (``browser("reader-ct")`` → a :class:`Browser` signed in as that user) are there for every
test module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html import unescape

import pytest
from alliance import Alliance
from browser import demo_passwords
from flask.testing import FlaskClient
from sqlalchemy.orm import sessionmaker
from werkzeug.test import TestResponse

from telerad.config import Config


def text_of(response: TestResponse) -> str:
    """The page's text as a person reads it: tags dropped, entities decoded, white space collapsed."""
    html = re.sub(r"<script\b.*?</script>", " ", response.get_data(as_text=True), flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def row_of(response: TestResponse, row_id: str) -> str:
    """The HTML of one table row (``<tr id=...>``), or an empty string when the page has no such row."""
    found = re.search(rf'<tr id="{re.escape(row_id)}".*?</tr>', response.get_data(as_text=True), flags=re.S)
    return found.group(0) if found else ""


def csrf_token(response: TestResponse) -> str:
    """The CSRF token a page carries (the sign-in form's hidden field, or the frame's meta tag)."""
    html = response.get_data(as_text=True)
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'<meta name="csrf-token" content="([^"]+)"', html
    )
    assert found, "the page carries no CSRF token"
    return found.group(1)


class Browser:
    """One person's browser: its own cookies and network address, signed in through the real ``/login`` form."""

    def __init__(self, alliance: Alliance, address: str) -> None:
        self.client: FlaskClient = alliance.client.application.test_client()
        self.client.environ_base["REMOTE_ADDR"] = address

    def sign_in(self, name: str, password: str) -> TestResponse:
        form = self.client.get("/login")
        return self.client.post("/login", data={"csrf_token": csrf_token(form), "name": name, "password": password})

    def get(self, path: str, **query: str) -> TestResponse:
        return self.client.get(path, query_string=query or None)

    def api_post(self, path: str, body: object = None, *, token: str | None = None) -> TestResponse:
        """A POST as the page's script sends it: JSON, with the ``X-CSRFToken`` header when ``token`` is given."""
        headers = {"X-CSRFToken": token} if token is not None else {}
        return self.client.post(path, json=body, headers=headers)


@pytest.fixture
def passwords(config: Config, sessions: sessionmaker) -> dict[str, str]:
    """The demo users' generated passwords, as ``prepare`` kept them for the administrator."""
    return demo_passwords(config)


@pytest.fixture
def browser(alliance: Alliance, passwords: dict[str, str]) -> Callable[[str], Browser]:
    """A signed-in browser for a demo user, each from its own address (sign-in limits are per address)."""
    count = iter(range(10, 250))

    def signed_in(name: str) -> Browser:
        person = Browser(alliance, f"10.0.0.{next(count)}")
        answer = person.sign_in(name, passwords[name])
        assert answer.status_code == 302, answer.get_data(as_text=True)
        return person

    return signed_in


# --- the worklist --------------------------------------------------------------------------------------------
