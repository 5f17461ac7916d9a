"""Users, their roles and qualifications, passwords (Argon2id) and API tokens."""

from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from telerad import audit, clock
from telerad.db import Base
from telerad.sites import Site

ROLES = ("station", "reader", "consultant", "supervisor", "admin")
MODALITIES = ("CT", "CR", "DX", "ECG")
TOKEN_PREFIX = "trd_"

_hasher = PasswordHasher()


class UserError(ValueError):
    """A user cannot be created or found as asked; the message says why."""


class User(Base):
    """A person who signs in: station staff, reader, consultant, supervisor or administrator."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    modalities_csv: Mapped[str] = mapped_column("modalities", String(64), default="")
    expert: Mapped[bool] = mapped_column(default=False)
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]

    site: Mapped[Site] = relationship()

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this reader is qualified to read."""
        return tuple(m for m in self.modalities_csv.split(",") if m)

    def check_password(self, password: str) -> bool:
        """Whether ``password`` is this user's password."""
        try:
            return _hasher.verify(self.password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


class ApiToken(Base):
    """A bearer token for the JSON API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()


def check_nobody(password: str) -> bool:
    """Check ``password`` against no one's hash (always ``False``): an unknown name costs as long as a wrong password."""
    try:
        _hasher.verify(_nobodys_hash(), password)
    except VerificationError:
        pass
    return False


@functools.cache
def _nobodys_hash() -> str:
    return _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    """An Argon2id hash of ``password``."""
    return _hasher.hash(password)


def add_user(
    session: Session,
    name: str,
    role: str,
    site_code: str,
    password: str,
    modalities: tuple[str, ...] = (),
    display_name: str = "",
    actor: str = "system",
    expert: bool = False,
) -> User:
    """Create a user; raises :class:`UserError` naming what is wrong."""
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise UserError(f"unknown modality {unknown[0]!r}: expected some of {', '.join(MODALITIES)}")
    if modalities and role not in ("reader", "consultant"):
        raise UserError("only readers and consultants are qualified for modalities")
    if len(password) < 8:
        raise UserError("the password must have at least 8 characters")
    site = session.scalar(select(Site).where(Site.code == site_code))
    if site is None:
        raise UserError(f"unknown site code {site_code!r}")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise UserError(f"a user named {name!r} already exists")
    user = User(
        name=name,
        display_name=display_name or name,
        role=role,
        site_id=site.id,
        modalities_csv=",".join(modalities),
        expert=expert,
        password_hash=hash_password(password),
        created_at=clock.now(),
    )
    session.add(user)
    session.flush()
    audit.record(session, actor, "user.created", "user", name, role=role, site=site_code)
    return user


def create_token(session: Session, name: str, actor: str = "system") -> str:
    """Issue a new API token for the user ``name``; the token is returned once and never stored."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise UserError(f"no user named {name!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_sha256=_digest(token), created_at=clock.now()))
    audit.record(session, actor, "token.created", "user", name)
    return token


def user_for_token(session: Session, token: str) -> User | None:
    """The active user a bearer token belongs to, or ``None``."""
    found = session.scalar(
        select(ApiToken).where(ApiToken.token_sha256 == _digest(token), ApiToken.revoked_at.is_(None))
    )
    return found.user if found is not None and found.user.active else None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
