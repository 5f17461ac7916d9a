"""Every word the interface shows goes through gettext and has a Chinese translation: templates, page code and the
messages scripts read from their page's ``i18n`` block."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from babel.messages.extract import extract_from_dir

from viewer.i18n import merged_catalogue

VIEWER = Path(__file__).resolve().parent.parent / "viewer"
TEMPLATES = VIEWER / "templates"
STATIC = VIEWER / "static"
STRING = r'"((?:[^"\\]|\\.)*)"'
I18N_BLOCK = re.compile(r'<script type="application/json" id="i18n">(.*?)</script>', re.S)
PAIR = re.compile(STRING + r"\s*:\s*_\(\s*" + STRING + r"\s*\)")
SCRIPT_MESSAGE = re.compile(r"\bt\(\s*" + STRING)
MODULE = re.compile(r"""<script type="module" src="\{\{ url_for\('static', filename='([\w./-]+\.js)'\) \}\}">""")
IMPORT = re.compile(r"""\bimport\s+(?:[^"';]*?\sfrom\s+)?["']\./([\w./-]+\.js)["']""")
PLACEHOLDER = re.compile(r"\{\w+\}|%\(\w+\)s")


def template_messages() -> dict[str, str]:
    """Every ``_()`` message of the templates (Jinja2's Babel extractor) and of the viewer's Python code, with
    where it was found first."""
    found: dict[str, str] = {}
    methods = [("templates/**.html", "jinja2.ext:babel_extract"), ("*.py", "python")]
    for filename, lineno, message, _comments, _context in extract_from_dir(VIEWER, method_map=methods):
        for text in message if isinstance(message, tuple) else (message,):
            if text:
                found.setdefault(text, f"{filename}:{lineno}")
    return found


def test_every_message_of_the_templates_and_pages_has_a_chinese_translation() -> None:
    catalogue = merged_catalogue("zh")  # also: no message is translated differently in two .po files
    messages = template_messages()
    assert len(messages) > 50
    missing = {text: where for text, where in messages.items() if text not in catalogue or not catalogue[text].string}
    assert missing == {}, f"messages without a Chinese translation (add them to the area's .po file): {missing}"


def test_translations_are_complete_and_keep_their_placeholders() -> None:
    catalogue = merged_catalogue("zh")
    for message in catalogue:
        if not message.id:
            continue
        assert message.string, f"{message.id!r} has an empty translation"
        assert not message.fuzzy, f"{message.id!r} is marked fuzzy"
        assert sorted(PLACEHOLDER.findall(message.id)) == sorted(PLACEHOLDER.findall(message.string)), (
            f"{message.id!r} and its translation {message.string!r} name different placeholders"
        )


def _modules(name: str, seen: set[str] | None = None) -> set[str]:
    """A static ES module and every module it imports, transitively."""
    seen = set() if seen is None else seen
    if name in seen or not (STATIC / name).is_file():
        return seen
    seen.add(name)
    for imported in IMPORT.findall((STATIC / name).read_text(encoding="utf-8")):
        _modules(str(Path(name).parent / imported).removeprefix("./"), seen)
    return seen


def _script_messages(modules: set[str]) -> set[str]:
    return {key for module in modules for key in SCRIPT_MESSAGE.findall((STATIC / module).read_text(encoding="utf-8"))}


def test_every_message_a_script_shows_has_a_chinese_translation() -> None:
    catalogue = merged_catalogue("zh")
    shown = _script_messages({path.name for path in STATIC.glob("*.js")})
    assert len(shown) > 20
    missing = sorted(key for key in shown if key not in catalogue or not catalogue[key].string)
    assert missing == [], f"scripts show messages without a Chinese translation: {missing}"


def test_every_message_a_script_shows_is_in_its_page_i18n_block() -> None:
    """Pages that write their i18n block out (``"msgid": _("msgid")`` entries) offer every message their scripts
    (and the modules those import) show; a block filled from Python is checked by the test above only."""
    checked = 0
    for template in sorted(TEMPLATES.glob("**/*.html")):
        source = template.read_text(encoding="utf-8")
        blocks = [block for block in I18N_BLOCK.findall(source) if "_(" in block]
        if not blocks:
            continue
        modules: set[str] = set()
        for name in MODULE.findall(source):
            modules |= _modules(name)
        offered: set[str] = set()
        for block in blocks:
            pairs = PAIR.findall(block)
            assert len(pairs) == block.count("_("), f"{template.name}: write each i18n entry as \"msgid\": _(\"msgid\")"
            assert [key for key, text in pairs if key != text] == [], f"{template.name}: an i18n key differs from its msgid"
            offered |= {key for key, _text in pairs}
        missing = sorted(_script_messages(modules) - offered)
        assert missing == [], f"{template.name}: its scripts show messages its i18n block lacks: {missing}"
        checked += 1
    assert checked >= 2  # at least the worklist and the station page


class _VisibleText(HTMLParser):
    """Collects text a person would see: text nodes outside scripts and styles, and the attributes read aloud or
    shown as hints."""

    SHOWN_ATTRIBUTES = ("title", "placeholder", "aria-label", "alt")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hidden_depth = 0
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.hidden_depth += 1
        self.texts += [value for name, value in attrs if name in self.SHOWN_ATTRIBUTES and value]
        if tag == "input":
            self.texts += [value for name, value in attrs if name == "value" and value and ("type", "submit") in attrs]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self.hidden_depth:
            self.hidden_depth -= 1

    def handle_data(self, data: str) -> None:
        if not self.hidden_depth:
            self.texts.append(data)


#: Text the same in every language: units and the names of keys on the keyboard (and single key letters).
UNTRANSLATED = re.compile(
    r"\b(?:mm|cm|ms|s|mV|Hz|HU|kV|mA|mAs|bpm|px|PgUp|PgDn|Home|End|Ctrl|Shift|Alt|Esc|Del|Enter|Tab|[A-Z])\b"
)


def test_templates_have_no_hard_coded_text() -> None:
    words = re.compile(r"[A-Za-z\u3400-\u9fff]")
    offenders: dict[str, list[str]] = {}
    for template in sorted(TEMPLATES.glob("**/*.html")):
        source = template.read_text(encoding="utf-8")
        source = re.sub(r"\{%-?\s*block \w+_class\s*-?%\}.*?\{%-?\s*endblock", " ", source, flags=re.S)  # class names
        source = re.sub(r"\{#.*?#\}|\{\{.*?\}\}|\{%.*?%\}", " ", source, flags=re.S)  # what Jinja fills in
        parser = _VisibleText()
        parser.feed(source)
        parser.close()
        found = [text.strip() for text in parser.texts if words.search(UNTRANSLATED.sub(" ", text))]
        if found:
            offenders[template.name] = found
    assert offenders == {}, f"visible text not passed through _(): {offenders}"
