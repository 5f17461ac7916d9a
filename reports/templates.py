"""Report templates: data files an administrator adds without code.

Each examination has a template, a YAML file in ``reports/templates/`` (and,
optionally, in the folder named by ``reports.templates_dir``, where a file
whose ``id`` is that of a built-in template replaces it). A template has:

- ``id``, ``name`` (Chinese) and ``name_en``;
- what it suits, to be preselected for a study: ``modalities``, ``body_parts``
  (DICOM Body Part Examined, PS3.16 CID 4031 code meanings in capitals),
  ``keywords`` looked for in the study and series descriptions, and
  ``default_for`` (the modalities it is chosen for when nothing else says);
- ``loinc``: the LOINC code of the examination (FHIR DiagnosticReport.code);
- ``fields``: structured fields, each ``text``, ``choice`` (with ``options``)
  or ``number`` (with a ``unit``), labelled in Chinese and English, with an
  optional ``default``; a number field may name a 12-lead ECG measurement to
  be ``prefill``-ed from (Telerad's own, else the device's);
- ``findings`` and ``impression``: the default text, and ``sections`` (their
  labels, e.g. the ECG's "conclusion");
- ``phrases`` (常用语): reusable sentences for the findings or the impression.

:func:`load_templates` validates every file and names the file and the key of
anything wrong (:class:`TemplateError`), as the configuration does.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from telerad.config import describe_error

BUILT_IN = Path(__file__).with_name("templates")

#: What a number field may be prefilled from: the columns of ``viewer.ecg_measurements.EcgMeasurement``.
PREFILLS = ("heart_rate", "rr_ms", "pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms", "qtc_fridericia_ms",
            "p_axis", "qrs_axis", "t_axis")
Prefill = Literal["heart_rate", "rr_ms", "pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms", "qtc_fridericia_ms",
                  "p_axis", "qrs_axis", "t_axis"]
_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class TemplateError(Exception):
    """A template file is wrong; the message names the file and the key."""


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Option(_Data):
    """One answer of a choice field."""

    value: str = Field(min_length=1, max_length=64)
    label: str = Field(min_length=1)
    label_en: str = Field(min_length=1)


class TemplateField(_Data):
    """A structured field of a report."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    type: Literal["text", "choice", "number"]
    label: str = Field(min_length=1)
    label_en: str = Field(min_length=1)
    options: tuple[Option, ...] = ()
    unit: str = ""
    unit_en: str = ""
    default: str | float | None = None
    prefill: Prefill | None = None
    required: bool = False  # must be filled in before the report is signed

    @model_validator(mode="after")
    def _consistent(self) -> TemplateField:
        if self.type == "choice":
            values = [option.value for option in self.options]
            if not values:
                raise ValueError("options: a choice field needs at least one option")
            if len(set(values)) != len(values):
                raise ValueError("options: option values must be unique")
            if self.default is not None and self.default not in values:
                raise ValueError(f"default: {self.default!r} is not one of the options")
        elif self.options:
            raise ValueError(f"options: only a choice field has options, not a {self.type} field")
        if self.type == "number" and self.default is not None and isinstance(self.default, str):
            raise ValueError("default: a number field's default must be a number")
        if self.type == "text" and self.default is not None and not isinstance(self.default, str):
            raise ValueError("default: a text field's default must be text")
        if self.prefill is not None and self.type != "number":
            raise ValueError("prefill: only a number field is prefilled from a measurement")
        if (self.unit or self.unit_en) and self.type != "number":
            raise ValueError("unit: only a number field has a unit")
        return self

    def check(self, value: Any) -> Any:
        """``value`` as stored for this field, or :class:`ValueError` saying what was expected."""
        if value is None:
            return None
        if self.type == "text":
            if not isinstance(value, str):
                raise ValueError("expected text")
            if len(value) > 4000:
                raise ValueError("at most 4000 characters")
            return value
        if self.type == "choice":
            if value == "":
                return None
            allowed = [option.value for option in self.options]
            if value not in allowed:
                raise ValueError(f"expected one of {', '.join(allowed)}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value or abs(value) > 1e9:
            raise ValueError("expected a number")
        return value


class Phrase(_Data):
    """A reusable sentence (常用语) for the findings or the impression."""

    label: str = Field(min_length=1)
    label_en: str = Field(min_length=1)
    section: Literal["findings", "impression"] = "findings"
    text: str = Field(min_length=1)


class SectionLabel(_Data):
    """How the editor and the PDF call a free-text section."""

    label: str = Field(min_length=1)
    label_en: str = Field(min_length=1)


class Sections(_Data):
    """The labels of the findings and the impression."""

    findings: SectionLabel = SectionLabel(label="检查所见", label_en="Findings")
    impression: SectionLabel = SectionLabel(label="诊断意见", label_en="Impression")


class Loinc(_Data):
    """A LOINC code (http://loinc.org) for the examination."""

    code: str = Field(pattern=r"^(LP)?[0-9]{1,7}-[0-9]$")
    display: str = Field(min_length=1)


class Template(_Data):
    """One examination's report template."""

    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    modalities: tuple[str, ...] = Field(min_length=1)
    body_parts: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    default_for: tuple[str, ...] = ()
    loinc: Loinc
    sections: Sections = Sections()
    fields: tuple[TemplateField, ...] = ()
    findings: str = ""
    impression: str = ""
    phrases: tuple[Phrase, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Template:
        ids = [field.id for field in self.fields]
        duplicate = next((i for i in ids if ids.count(i) > 1), None)
        if duplicate is not None:
            raise ValueError(f"fields: the field id {duplicate!r} is used twice")
        stray = [m for m in self.default_for if m not in self.modalities]
        if stray:
            raise ValueError(f"default_for: {', '.join(stray)} is not among the template's modalities")
        return self

    def field(self, field_id: str) -> TemplateField | None:
        """The field with ``field_id``, if the template has one."""
        return next((field for field in self.fields if field.id == field_id), None)

    def defaults(self) -> dict[str, Any]:
        """Every field's default value (``None`` where there is none)."""
        return {field.id: field.default for field in self.fields}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for the editor."""
        return self.model_dump(mode="json")


def load_file(path: Path) -> Template:
    """Read and validate one template file; :class:`TemplateError` names the file and every wrong key."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TemplateError(f"cannot read report template {path}: {exc.strerror}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise TemplateError(f"report template {path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise TemplateError(f"report template {path}: expected a mapping of keys at the top level")
    try:
        return Template.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(describe_error(error) for error in exc.errors())
        raise TemplateError(f"report template {path}: {problems}") from None


def _load_folder(folder: Path) -> dict[str, tuple[Template, Path]]:
    found: dict[str, tuple[Template, Path]] = {}
    for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
        template = load_file(path)
        if template.id in found:
            raise TemplateError(f"report template {path}: id: {template.id!r} is already the id of {found[template.id][1]}")
        found[template.id] = (template, path)
    return found


@functools.lru_cache(maxsize=8)
def load_templates(extra: Path | None = None) -> dict[str, Template]:
    """The built-in templates and those in ``extra`` (which replace built-in ones of the same id), by id.

    Loaded once per process and folder; a wrong file raises :class:`TemplateError`.
    """
    found = _load_folder(BUILT_IN)
    if extra is not None:
        if not extra.is_dir():
            raise TemplateError(f"reports.templates_dir: {extra} is not a folder")
        found |= _load_folder(extra)
    return {template_id: template for template_id, (template, _path) in found.items()}


def choose(templates: dict[str, Template], modality: str, body_parts: set[str], descriptions: list[str]) -> Template | None:
    """The template that suits a study best: its modality, then body part, then words in its descriptions.

    ``None`` when no template is made for ``modality``.
    """
    parts = {part.upper().replace(" ", "") for part in body_parts if part}
    text = " ".join(descriptions).lower()
    best: tuple[float, str] | None = None
    chosen: Template | None = None
    for template in templates.values():
        if modality not in template.modalities:
            continue
        score = 4.0 * bool(parts & {p.upper() for p in template.body_parts})
        score += 2.0 * any(word.lower() in text for word in template.keywords)
        score += 1.0 * (modality in template.default_for)
        rank = (score, template.id)
        if best is None or rank[0] > best[0] or (rank[0] == best[0] and rank[1] < best[1]):
            best, chosen = rank, template
    return chosen
