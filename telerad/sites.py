"""The alliance's sites (province → county → township → village) and their AE titles."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from telerad.config import Config
from telerad.db import Base

LEVELS = ("province", "county", "township", "village")


class Site(Base):
    """A hospital, reading centre, clinic or station of the alliance."""

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200), default="")
    level: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    return_ae_title: Mapped[str | None] = mapped_column(String(16))
    return_host: Mapped[str | None] = mapped_column(String(255))
    return_port: Mapped[int | None]

    ae_titles: Mapped[list[SiteAE]] = relationship(back_populates="site", cascade="all, delete-orphan")


class SiteAE(Base):
    """A calling AE title registered to a site: only these may associate with the node."""

    __tablename__ = "site_ae_titles"

    id: Mapped[int] = mapped_column(primary_key=True)
    ae_title: Mapped[str] = mapped_column(String(16), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)

    site: Mapped[Site] = relationship(back_populates="ae_titles")


def sync_sites(session: Session, config: Config) -> list[Site]:
    """Create or update the sites and AE titles named in ``config`` (the configuration wins).

    Sites absent from the configuration are left in place: studies refer to them.
    """
    by_code = {site.code: site for site in session.scalars(select(Site))}
    for entry in config.sites:
        site = by_code.get(entry.code) or Site(code=entry.code)
        site.name, site.name_en, site.level = entry.name, entry.name_en, entry.level
        ret = entry.returns_to
        site.return_ae_title = ret.ae_title if ret else None
        site.return_host = ret.host if ret else None
        site.return_port = ret.port if ret else None
        session.add(site)
        by_code[entry.code] = site
    session.flush()
    wanted = {title: entry.code for entry in config.sites for title in entry.ae_titles}
    for entry in config.sites:
        by_code[entry.code].parent_id = by_code[entry.parent].id if entry.parent else None
    for registered in session.scalars(select(SiteAE)):
        if registered.ae_title not in wanted:
            session.delete(registered)
    session.flush()
    existing = {registered.ae_title: registered for registered in session.scalars(select(SiteAE))}
    for title, code in wanted.items():
        registered = existing.get(title) or SiteAE(ae_title=title)
        registered.site_id = by_code[code].id
        session.add(registered)
    session.flush()
    return [by_code[entry.code] for entry in config.sites]


def subtree_ids(session: Session, site_id: int) -> set[int]:
    """The ids of ``site_id`` and every site below it in the alliance tree."""
    children: dict[int | None, list[int]] = {}
    for child_id, parent_id in session.execute(select(Site.id, Site.parent_id)).all():
        children.setdefault(parent_id, []).append(child_id)
    found, frontier = {site_id}, [site_id]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found
