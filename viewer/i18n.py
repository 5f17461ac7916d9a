"""The interface's languages: Chinese by default, English on request (Flask-Babel).

Messages are written in English in templates and code (``_("...")``) and
translated in gettext catalogues under ``viewer/translations/<lang>/LC_MESSAGES``;
each area keeps its own ``.po`` file there, and :func:`compile_catalogues`
merges them into the one compiled catalogue Flask-Babel reads. A request picks
its language from ``?lang=``, which the session remembers, else the
configuration's ``service.language``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, current_app, request, session

from flask_babel import Babel, get_locale

LANGUAGES = ("zh", "en")
SOURCES = Path(__file__).parent / "translations"

babel = Babel()


def merged_catalogue(language: str) -> Catalog:
    """Every ``.po`` file of ``language`` as one catalogue; a message translated twice is an error."""
    merged = Catalog(locale=language, domain="messages")
    for path in sorted((SOURCES / language / "LC_MESSAGES").glob("*.po")):
        with path.open("rb") as handle:
            for message in read_po(handle, locale=language):
                if not message.id:
                    continue
                if message.id in merged and merged[message.id].string != message.string:
                    raise ValueError(f"{path.name}: {message.id!r} is translated differently in another catalogue")
                merged[message.id] = message
    return merged


def compile_catalogues(target: Path) -> Path:
    """Compile the merged catalogues into ``target`` (atomically per file) and return it."""
    for language_dir in SOURCES.iterdir():
        if not language_dir.is_dir():
            continue
        out_dir = target / language_dir.name / "LC_MESSAGES"
        out_dir.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=out_dir, suffix=".mo.tmp")
        with os.fdopen(descriptor, "wb") as handle:
            write_mo(handle, merged_catalogue(language_dir.name))
        os.replace(temporary, out_dir / "messages.mo")
    return target


def _select_language() -> str:
    asked = request.args.get("lang")
    if asked in LANGUAGES:
        session["lang"] = asked
        return asked
    remembered = session.get("lang")
    if remembered in LANGUAGES:
        return remembered
    return current_app.extensions["telerad.config"].service.language


def init_app(app: Flask, compiled_dir: Path) -> None:
    """Bind Flask-Babel to ``app`` with catalogues compiled into ``compiled_dir``."""
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(compile_catalogues(compiled_dir))
    app.config["BABEL_DEFAULT_LOCALE"] = "en"
    babel.init_app(app, locale_selector=_select_language)
    app.context_processor(
        lambda: {"language": get_locale().language, "time_zone": current_app.extensions["telerad.config"].reading.timezone}
    )
