"""Bringing an installation to life: schema, the configured sites, the demo users."""

from __future__ import annotations

import os
import secrets

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from telerad.config import Config
from telerad.db import upgrade
from telerad.sites import sync_sites
from telerad.users import User, add_user


def prepare(config: Config, sessions: sessionmaker) -> dict[str, str]:
    """Migrate the database, sync the sites and create the configured users that are missing.

    Returns the generated passwords of the users created now (name → password);
    they are also appended to ``demo-passwords.txt`` in the data directory,
    readable by the owner only.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(config.database_url)
    created: dict[str, str] = {}
    with sessions() as session, session.begin():
        sync_sites(session, config)
        existing = set(session.scalars(select(User.name)))
        for entry in config.users:
            if entry.name in existing:
                continue
            password = secrets.token_urlsafe(9)
            add_user(
                session, entry.name, entry.role, entry.site, password, entry.modalities, entry.display_name,
                expert=entry.expert,
            )
            created[entry.name] = password
    if created:
        path = config.data_dir / "demo-passwords.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.writelines(f"{name}\t{password}\n" for name, password in created.items())
    return created
