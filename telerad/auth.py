"""Who is calling the web application: browser sessions and API tokens, CSRF and sign-in limits.

A browser signs in with a password (:func:`sign_in`) and carries a session
cookie that expires after ``web.session_minutes`` without a request; API
clients and DICOMweb tools send ``Authorization: Bearer <token>`` instead, and
a request that carries a token is judged by the token alone. Every
state-changing request of a browser session must carry the CSRF token
(``X-CSRFToken`` header or the ``csrf_token`` form field); token requests carry
no cookie and need none. Sign-in attempts are rate-limited per address.

Views ask :func:`caller` for the :class:`Caller`, a snapshot of the user taken
when the request began; :func:`user_in` gives the live :class:`User` row inside
a view's own database session.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from flask import Flask, current_app, request
from flask import session as cookie_session
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import AnonymousUserMixin, LoginManager, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from telerad import audit
from telerad.config import Config
from telerad.problems import Problem
from telerad.sites import Site
from telerad.users import User, check_nobody, user_for_token

login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, swallow_errors=True, in_memory_fallback_enabled=True)

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


@dataclass(frozen=True)
class Caller:
    """The authenticated user of one request, detached from any database session."""

    id: int
    name: str
    display_name: str
    role: str
    site_id: int
    site_code: str
    site_name: str
    modalities: tuple[str, ...]
    credential: str  # "session" or "token"
    fingerprint: str

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        """The session's user id, tied to the password: changing the password ends every session."""
        return f"{self.id}.{self.fingerprint}"


def _fingerprint(user: User) -> str:
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def _snapshot(user: User, credential: str) -> Caller:
    site: Site = user.site
    return Caller(
        id=user.id, name=user.name, display_name=user.display_name or user.name, role=user.role,
        site_id=user.site_id, site_code=site.code, site_name=site.name, modalities=user.modalities,
        credential=credential, fingerprint=_fingerprint(user),
    )


def _sessions() -> sessionmaker:
    return current_app.extensions["telerad.sessions"]


def bearer_token() -> str | None:
    """The request's ``Authorization: Bearer`` token, if it sends one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


@login_manager.user_loader
def _load_from_session(session_id: str) -> Caller | None:
    if bearer_token() is not None:
        return None  # a token request is judged by its token alone
    user_id, _, fingerprint = session_id.partition(".")
    if not user_id.isdigit():
        return None
    with _sessions()() as session:
        user = session.get(User, int(user_id))
        if user is None or not user.active or _fingerprint(user) != fingerprint:
            return None
        return _snapshot(user, "session")


@login_manager.request_loader
def _load_from_token(_request: object) -> Caller | None:
    token = bearer_token()
    if token is None:
        return None
    with _sessions()() as session:
        user = user_for_token(session, token)
        return _snapshot(user, "token") if user is not None else None


def caller() -> Caller | None:
    """The authenticated caller of this request, or ``None``."""
    user = current_user._get_current_object()
    return user if isinstance(user, Caller) else None


def user_in(session: Session) -> User | None:
    """The caller as a live row of ``session`` (``None`` when nobody is signed in)."""
    who = caller()
    return session.get(User, who.id) if who is not None else None


@contextmanager
def caller_transaction() -> Iterator[tuple[Session, User]]:
    """One database transaction as the authenticated caller (401 problem otherwise); committed on success."""
    with _sessions()() as session, session.begin():
        user = user_in(session)
        if user is None:
            raise Problem(401, "sign in, or send a valid API token as 'Authorization: Bearer <token>'")
        yield session, user


def sign_in(session: Session, name: str, password: str, address: str | None) -> User | None:
    """Check a browser sign-in; on success start the session. Both outcomes are audited."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        check_nobody(password)
    if user is None or not user.active or not user.check_password(password):
        audit.record(session, name[:128] or "-", "sign_in_failed", "user", name[:128], address=address)
        return None
    login_user(_snapshot(user, "session"))
    cookie_session.permanent = True
    audit.record(session, user.name, "sign_in", "user", str(user.id), address=address)
    return user


def sign_out(session: Session) -> None:
    """End the browser session (audited)."""
    who = caller()
    if who is not None:
        audit.record(session, who.name, "sign_out", "user", str(who.id))
    logout_user()


def _secret_key(data_dir: Path) -> str:
    """The key that signs session cookies, made once per data directory and shared by every web process."""
    path = data_dir / "web-secret"
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    key = secrets.token_hex(32)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key


def _limiter_storage(redis_url: str) -> str:
    """The ``limits`` storage URI for the job queue's Redis (memory when none is configured)."""
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url.removeprefix("unix://")
    return redis_url or "memory://"


def init_app(app: Flask, config: Config) -> None:
    """Bind sign-in, CSRF protection and the sign-in limiter to ``app``."""
    app.config.update(
        SECRET_KEY=_secret_key(config.data_dir),
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=config.web.session_minutes),
        SESSION_REFRESH_EACH_REQUEST=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.web.secure_cookies,
        SESSION_COOKIE_NAME="telerad_session",
        REMEMBER_COOKIE_DURATION=timedelta(0),
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,
        RATELIMIT_STORAGE_URI=_limiter_storage(config.redis.url),
        RATELIMIT_HEADERS_ENABLED=True,
    )
    login_manager.init_app(app)
    login_manager.anonymous_user = AnonymousUserMixin
    csrf.init_app(app)
    limiter.init_app(app)

    @app.before_request
    def _protect_against_csrf() -> None:
        # A signed-in browser must prove the request came from our pages; a token request carries no cookie,
        # and an anonymous one can change nothing (the sign-in form checks its own token).
        if request.method not in _SAFE_METHODS and bearer_token() is None and "_user_id" in cookie_session:
            csrf.protect()
