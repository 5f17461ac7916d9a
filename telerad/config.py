"""Configuration: ``config.yaml`` overlaid with ``TELERAD_<SECTION>_<KEY>`` variables.

Configuration is data: one validated, immutable :class:`Config` object. A wrong
or missing key stops start-up with a :class:`ConfigError` naming the key and
what was expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator,
)

ENV_PREFIX = "TELERAD_"
_AE_TITLE = re.compile(r"[A-Za-z0-9_.-]([A-Za-z0-9_. -]{0,14}[A-Za-z0-9_.-])?")
SiteLevel = Literal["province", "county", "township", "village"]
Role = Literal["station", "reader", "consultant", "supervisor", "admin"]


class ConfigError(Exception):
    """The configuration is wrong; the message names the key and what was expected."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceSection(_Section):
    """Where Telerad keeps its files and which language it speaks by default."""

    data_dir: Path = Path("var")
    language: Literal["zh", "en"] = "zh"
    load_samples: bool = False


class DatabaseSection(_Section):
    """The archive index and all other tables; empty ``url`` means an SQLite file in ``data_dir``."""

    url: str = ""


class RedisSection(_Section):
    """The job queue's Redis; empty ``url`` starts the embedded server."""

    url: str = ""


class DicomSection(_Section):
    """The DICOM node (PS3.7 DIMSE services over PS3.8 upper layer)."""

    ae_title: str = Field("TELERAD", min_length=1, max_length=16)
    host: str = "0.0.0.0"
    port: int = Field(11112, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    stable_seconds: float = Field(60.0, gt=0)
    max_pdu: int = Field(262144, ge=0)
    network_timeout: float = Field(60.0, gt=0)


class WebSection(_Section):
    """The web application and the JSON API."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    session_minutes: float = Field(60.0, gt=0)
    sign_in_limit: str = "5 per minute"
    secure_cookies: bool = False
    ohif_dir: Path | None = None


class StrongIdentifier(_Section):
    """An identifier strong enough to link one person across sites, e.g. the national ID number."""

    issuer: str = Field(min_length=1)


class IdentitySection(_Section):
    """How patients are identified across the alliance."""

    strong_identifiers: tuple[StrongIdentifier, ...] = ()


class ReturnAddress(_Section):
    """Where a station receives reports: its own DICOM storage SCP."""

    ae_title: str = Field(min_length=1, max_length=16)
    host: str
    port: int = Field(ge=1, le=65535)


class SiteConfig(_Section):
    """One site of the alliance tree: province, county, township or village."""

    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    name: str = Field(min_length=1)
    name_en: str = ""
    level: SiteLevel
    parent: str | None = None
    ae_titles: tuple[str, ...] = ()
    returns_to: ReturnAddress | None = None

    @field_validator("ae_titles")
    @classmethod
    def _ae_titles_valid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for title in value:
            if not _AE_TITLE.fullmatch(title):
                raise ValueError(f"AE title {title!r} must be 1-16 letters, digits, '_', '-', '.' or inner spaces")
        return value


class UserConfig(_Section):
    """A demo or seeded user; the password is generated at setup and printed once."""

    name: str = Field(min_length=1, max_length=64)
    display_name: str = ""
    role: Role
    site: str
    modalities: tuple[str, ...] = ()
    expert: bool = False


Priority = Literal["STAT", "URGENT", "ROUTINE"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class PriorityRule(_Section):
    """A priority for studies from a site and/or of a modality, when neither station nor study says."""

    site: str | None = None
    modality: str | None = None
    priority: Priority


class CentreConfig(_Section):
    """A reading centre (county or province) and how its work reaches readers."""

    site: str
    mode: Literal["push", "pull"] = "pull"


class RoutingRule(_Section):
    """Keep simple work away from experts: matching tasks go to general readers when any is on duty."""

    modality: str | None = None
    priority: Priority | None = None
    readers: Literal["general", "any"] = "general"


class DutyConfig(_Section):
    """A weekly shift of one reader, in the service's time zone."""

    user: str
    days: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    start: str = Field("00:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    end: str = Field("24:00", pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")


class ReadingSection(_Section):
    """The reading queue's service-level policy."""

    turnaround_minutes: dict[Priority, float] = Field(
        default_factory=lambda: {"STAT": 30.0, "URGENT": 120.0, "ROUTINE": 1440.0}
    )
    consult_turnaround_minutes: dict[Priority, float] = Field(
        default_factory=lambda: {"STAT": 60.0, "URGENT": 240.0, "ROUTINE": 2880.0}
    )
    default_priority: Priority = "ROUTINE"
    reminder_fractions: tuple[float, ...] = (0.5, 0.75)
    escalation_fraction: float = Field(0.9, gt=0, le=1)
    lease_minutes: float = Field(20.0, gt=0)
    sweep_seconds: float = Field(60.0, gt=0)
    timezone: str = "Asia/Shanghai"
    webhook_url: str = ""
    priority_rules: tuple[PriorityRule, ...] = ()
    centres: tuple[CentreConfig, ...] = ()
    routing: tuple[RoutingRule, ...] = ()
    duty: tuple[DutyConfig, ...] = ()

    @field_validator("turnaround_minutes", "consult_turnaround_minutes")
    @classmethod
    def _every_priority(cls, value: dict[str, float]) -> dict[str, float]:
        missing = {"STAT", "URGENT", "ROUTINE"} - set(value)
        if missing:
            raise ValueError(f"needs a turnaround for {', '.join(sorted(missing))}")
        if any(minutes <= 0 for minutes in value.values()):
            raise ValueError("turnaround minutes must be greater than 0")
        return value

    @field_validator("reminder_fractions")
    @classmethod
    def _fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < fraction < 1 for fraction in value) or list(value) != sorted(value):
            raise ValueError("reminder fractions must rise, each between 0 and 1")
        return value


class DeliverySection(_Section):
    """How signed reports go back to the station (``reports.delivery``).

    A delivery that fails is tried again after each of ``retry_minutes`` in turn; after the last it is failed
    for good, with the reason. ``send_text_sr`` adds a Basic Text SR beside the Encapsulated PDF;
    ``webhook_url`` (empty: none) receives each signed report as a FHIR R4 DiagnosticReport.
    """

    retry_minutes: tuple[float, ...] = (1.0, 5.0, 15.0, 60.0, 240.0)
    send_text_sr: bool = False
    webhook_url: str = ""
    timeout: float = Field(30.0, gt=0)
    sweep_seconds: float = Field(60.0, gt=0)

    @field_validator("retry_minutes")
    @classmethod
    def _pauses(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(minutes <= 0 for minutes in value):
            raise ValueError("retry pauses must be greater than 0 minutes")
        return value


class CriticalCategory(_Section):
    """A kind of critical finding (危急值) a reader can flag, with its names in Chinese and English."""

    code: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")
    name: str = Field(min_length=1)
    name_en: str = ""


#: Critical findings of imaging and ECG (影像、心电危急值) commonly listed by Chinese hospitals.
DEFAULT_CRITICAL_CATEGORIES = (
    CriticalCategory(code="intracranial_haemorrhage", name="颅内出血", name_en="Intracranial haemorrhage"),
    CriticalCategory(code="brain_herniation", name="脑疝", name_en="Brain herniation"),
    CriticalCategory(code="acute_stroke", name="急性大面积脑梗死", name_en="Acute large-territory infarction"),
    CriticalCategory(code="pneumothorax", name="张力性气胸或大量气胸", name_en="Tension or large pneumothorax"),
    CriticalCategory(code="aortic_dissection", name="主动脉夹层或动脉瘤破裂", name_en="Aortic dissection or ruptured aneurysm"),
    CriticalCategory(code="pulmonary_embolism", name="肺栓塞", name_en="Pulmonary embolism"),
    CriticalCategory(code="gi_perforation", name="消化道穿孔（膈下游离气体）", name_en="Bowel perforation (free air)"),
    CriticalCategory(code="organ_rupture", name="肝、脾、肾等实质脏器破裂", name_en="Solid organ rupture"),
    CriticalCategory(code="spinal_cord_injury", name="脊柱骨折伴脊髓损伤", name_en="Spinal fracture with cord injury"),
    CriticalCategory(code="acute_mi", name="急性心肌梗死（ST段抬高）", name_en="Acute myocardial infarction (ST elevation)"),
    CriticalCategory(code="malignant_arrhythmia", name="恶性心律失常（室速、室颤、心脏停搏）",
                     name_en="Malignant arrhythmia (VT, VF, asystole)"),
    CriticalCategory(code="high_grade_av_block", name="高度或三度房室传导阻滞", name_en="High-grade or complete AV block"),
    CriticalCategory(code="extreme_rate", name="严重心动过缓（<40次/分）或心动过速（>180次/分）",
                     name_en="Extreme bradycardia (<40/min) or tachycardia (>180/min)"),
    CriticalCategory(code="other", name="其他危急情况", name_en="Other critical finding"),
)


class ReportsSection(_Section):
    """Report templates, signatures and critical findings (the ``reports`` package).

    ``countersign_sites``: codes of reading centres where a junior reader's report (a reader who is not
    ``expert``) is ``preliminary`` after its author signs, until an expert of the modality at that centre or
    above it (the province's consultant) countersigns it.
    ``critical_ack_minutes``: how long the sending station has to acknowledge a critical finding before the
    centre's supervisors are told (once). ``critical_categories``: the kinds of critical finding a reader picks
    from. ``templates_dir``: a folder of extra report templates (``*.yaml``, relative to this file) an
    administrator adds without code; a template there with the id of a built-in one replaces it.
    """

    countersign_sites: tuple[str, ...] = ()
    critical_ack_minutes: float = Field(30.0, gt=0)
    critical_categories: tuple[CriticalCategory, ...] = Field(DEFAULT_CRITICAL_CATEGORIES, min_length=1)
    templates_dir: Path | None = None

    @field_validator("critical_categories")
    @classmethod
    def _unique_codes(cls, value: tuple[CriticalCategory, ...]) -> tuple[CriticalCategory, ...]:
        codes = [category.code for category in value]
        if len(set(codes)) != len(codes):
            raise ValueError("category codes must be unique")
        return value


class SigningSection(_Section):
    """Report signatures (``reports.keys``): who issues readers' certificates, which CAs are trusted.

    With ``ca_certificate`` and ``ca_key`` (PEM files, relative to this file; the key encrypted with
    ``ca_key_password`` when set) each reader's certificate is issued by the hospital's CA; with ``ca_certificate``
    alone that CA is trusted for keys imported from the PKCS#12 files it issued. ``demo_ca`` makes (once per data
    directory, in ``ca/``) and trusts a self-signed demo CA that certifies readers who have neither.
    ``certificate_days``: how long a reader's certificate issued here is valid.
    """

    ca_certificate: Path | None = None
    ca_key: Path | None = None
    ca_key_password: str = ""
    demo_ca: bool = True
    certificate_days: int = Field(1825, ge=1)

    @field_validator("ca_key")
    @classmethod
    def _key_has_certificate(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and info.data.get("ca_certificate") is None:
            raise ValueError("needs signing.ca_certificate (the CA's certificate) as well")
        return value


class QualitySection(_Section):
    """Quality control (质控): peer review of a random sample of final reports (``reports.quality``).

    Each final report is drawn for review with probability ``sample_share``, or ``new_reader_share`` when its
    author signed their first report less than ``new_reader_days`` ago. The reviewer is another active reader
    qualified for the modality at the report's centre (or above), with the least open review work.
    ``review_days``: how long a reviewer has before the review shows as late on the dashboard.
    """

    sample_share: float = Field(0.05, ge=0, le=1)
    new_reader_share: float = Field(0.2, ge=0, le=1)
    new_reader_days: int = Field(90, ge=0)
    review_days: int = Field(7, ge=1)


class Config(_Section):
    """The whole configuration of one Telerad installation."""

    service: ServiceSection = ServiceSection()
    database: DatabaseSection = DatabaseSection()
    redis: RedisSection = RedisSection()
    dicom: DicomSection = DicomSection()
    web: WebSection = WebSection()
    identity: IdentitySection = IdentitySection()
    reading: ReadingSection = ReadingSection()
    delivery: DeliverySection = DeliverySection()
    reports: ReportsSection = ReportsSection()
    signing: SigningSection = SigningSection()
    quality: QualitySection = QualitySection()
    sites: tuple[SiteConfig, ...] = ()
    users: tuple[UserConfig, ...] = ()

    @model_validator(mode="after")
    def _tree_is_consistent(self) -> Config:
        codes: dict[str, SiteConfig] = {}
        for index, site in enumerate(self.sites):
            if site.code in codes:
                raise ValueError(f"sites[{index}].code: duplicate site code {site.code!r}")
            codes[site.code] = site
        titles: dict[str, str] = {}
        order = ("province", "county", "township", "village")
        for index, site in enumerate(self.sites):
            if site.parent is None:
                if site.level != "province":
                    raise ValueError(f"sites[{index}].parent: a {site.level} site needs a parent site code")
            elif site.parent not in codes:
                raise ValueError(f"sites[{index}].parent: unknown site code {site.parent!r}")
            elif order.index(codes[site.parent].level) >= order.index(site.level):
                raise ValueError(
                    f"sites[{index}].parent: a {site.level} cannot sit under the {codes[site.parent].level} {site.parent!r}"
                )
            for title in site.ae_titles:
                if title in titles:
                    raise ValueError(f"sites[{index}].ae_titles: {title!r} is already registered to {titles[title]!r}")
                titles[title] = site.code
        for index, user in enumerate(self.users):
            if user.site not in codes:
                raise ValueError(f"users[{index}].site: unknown site code {user.site!r}")
        users = {user.name for user in self.users}
        for index, rule in enumerate(self.reading.priority_rules):
            if rule.site is not None and rule.site not in codes:
                raise ValueError(f"reading.priority_rules[{index}].site: unknown site code {rule.site!r}")
        for index, centre in enumerate(self.reading.centres):
            if centre.site not in codes or codes[centre.site].level not in ("county", "province"):
                raise ValueError(f"reading.centres[{index}].site: {centre.site!r} is not a county or province site")
        for index, code in enumerate(self.reports.countersign_sites):
            if code not in codes or codes[code].level not in ("county", "province"):
                raise ValueError(f"reports.countersign_sites[{index}]: {code!r} is not a county or province site")
        for index, shift in enumerate(self.reading.duty):
            if shift.user not in users:
                raise ValueError(f"reading.duty[{index}].user: unknown user {shift.user!r}")
        return self

    @property
    def data_dir(self) -> Path:
        """The data directory, absolute."""
        return self.service.data_dir.resolve()

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL of the database, defaulting to an SQLite file in the data directory."""
        return self.database.url or f"sqlite:///{self.data_dir / 'telerad.db'}"


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Overlay ``TELERAD_<SECTION>_<KEY>`` (and ``TELERAD_<LIST>``) variables on ``raw``."""
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in raw.items()}
    sections = {name for name, field in Config.model_fields.items() if isinstance(field.default, BaseModel)}
    for variable, value in environ.items():
        if not variable.startswith(ENV_PREFIX):
            continue
        rest = variable[len(ENV_PREFIX) :].lower()
        section = next((s for s in sections if rest.startswith(s + "_")), None)
        if section is not None:
            key = rest[len(section) + 1 :]
            parsed = yaml.safe_load(value) if value.strip() else value
            merged.setdefault(section, {})
            if not isinstance(merged[section], dict):
                raise ConfigError(f"{section}: expected a mapping of keys")
            # Keep strings as written unless YAML gives a non-string scalar or a collection.
            merged[section][key] = value if isinstance(parsed, str) or parsed is None else parsed
        elif rest in ("sites", "users"):
            merged[rest] = yaml.safe_load(value)
    return merged


def describe_error(error: dict[str, Any]) -> str:
    """One pydantic validation error as ``dotted.key: what is wrong (got value)``."""
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    got = error.get("input")
    suffix = f" (got {got!r})" if got is not None and not isinstance(got, (dict, list)) else ""
    return f"{key}: {message}{suffix}"


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate the configuration from ``path`` and the environment.

    Relative paths in the file are taken relative to the file's folder.
    Raises :class:`ConfigError` naming every wrong key.
    """
    environ = os.environ if environ is None else environ
    path = Path(path or environ.get("TELERAD_CONFIG", "config.yaml"))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    raw = _apply_environment(raw, environ)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(describe_error(error) for error in exc.errors())
        raise ConfigError(f"invalid configuration in {path}: {problems}") from None
    data_dir = config.service.data_dir
    if not data_dir.is_absolute():
        data_dir = path.resolve().parent / data_dir
    templates_dir = config.reports.templates_dir
    if templates_dir is not None and not templates_dir.is_absolute():
        templates_dir = path.resolve().parent / templates_dir
    return config.model_copy(update={
        "service": config.service.model_copy(update={"data_dir": data_dir}),
        "reports": config.reports.model_copy(update={"templates_dir": templates_dir}),
        "signing": config.signing.model_copy(update={
            key: path.resolve().parent / value
            for key in ("ca_certificate", "ca_key") if (value := getattr(config.signing, key)) is not None
        }),
    })
