"""The report as a PDF: an A4 document in Chinese with English labels, signed as a PDF signature.

:func:`render_report_pdf` lays out the signed document (:mod:`reports.canonical`) with fpdf2: the reading centre
and the sending station, patient and study identifiers, structured fields, findings, impression, critical
finding, addenda, key images (CT, X-ray) or the lead II rhythm strip (ECG), signer and time. The CJK font (Noto
Sans CJK SC from Debian's ``fonts-noto-cjk``, or WenQuanYi Micro Hei) is embedded as a subset, so every reader
shows the same glyphs.

:func:`sign_pdf` adds a PAdES baseline B-B signature (ETSI EN 319 142-1; ISO 32000-2 section 12.8, SubFilter
``ETSI.CAdES.detached``) with pyHanko: a CMS signature (RFC 5652) over the whole file but the signature value,
carrying the signer's certificate and its chain up to the CA, with the server's time of signature as ``/M``.
:func:`validate_pdf` checks one with pyHanko's validator against Telerad's trusted CAs.
"""

from __future__ import annotations

import functools
import io
import math
import subprocess
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from cryptography import x509
from fontTools.ttLib import TTCollection
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from PIL import Image as PILImage
from PIL import ImageDraw
from pydicom import dcmread
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.validation.pdf_embedded import async_validate_pdf_signature
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import select
from sqlalchemy.orm import Session

from pacs_node.index import Instance, Series, Study
from pacs_node.storage import FileStorage
from reports.keys import ReaderSigner, fingerprint, run_coroutine, to_asn1
from viewer.ecg import Ecg, EcgError, read_ecg
from viewer.pixels import RenderError
from viewer.rendering import open_image, render
from viewer.study_data import is_waveform

#: CJK fonts looked for first (Debian's packages), before asking fontconfig for any font that covers Chinese.
FONT_CANDIDATES = (
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),  # fonts-noto-cjk (CFF outlines)
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),  # fonts-wqy-microhei (TrueType outlines)
)
#: The rhythm strip's scale: the paper ECG's 25 mm/s and 10 mm/mV, drawn at 8 pixels per millimetre.
MM_PER_SECOND, MM_PER_MV, PX_PER_MM = 25.0, 10.0, 8
KEY_IMAGES = 4

_LABELS = {
    "title_ecg": ("心电图诊断报告", "ECG report"),
    "title_imaging": ("影像诊断报告", "Imaging report"),
    "name": ("姓名", "Name"),
    "sex": ("性别", "Sex"),
    "birth_date": ("出生日期", "Date of birth"),
    "patient_id": ("患者ID", "Patient ID"),
    "station": ("送检单位", "Sending station"),
    "study_date": ("检查日期", "Study date"),
    "accession": ("检查号", "Accession no."),
    "study_uid": ("检查UID", "Study UID"),
    "fields": ("结构化项目", "Structured fields"),
    "findings": ("检查所见", "Findings"),
    "impression": ("诊断意见", "Impression"),
    "critical": ("危急值", "Critical finding"),
    "addenda": ("补充报告", "Addenda"),
    "addendum": ("本次签署的补充报告", "Addendum signed now"),
    "key_images": ("关键图像", "Key images"),
    "strip": ("节律条", "Rhythm strip"),
    "signer": ("签名医师", "Signed by"),
    "role": ("签名类型", "Signature"),
    "signed_at": ("签名时间", "Signed at"),
    "fingerprint": ("证书指纹", "Certificate SHA-256"),
    "footer": ("本报告经电子签名（PAdES），以电子文件为准", "Digitally signed (PAdES); the electronic file prevails"),
    "page": ("页", "Page"),
}
_ROLES = {"author": ("报告", "author"), "countersign": ("审核", "countersignature"), "cosign": ("会诊", "co-signature")}
_SEXES = {"M": ("男", "male"), "F": ("女", "female"), "O": ("其他", "other")}
_GREY, _INK, _RED = (110, 110, 110), (20, 20, 20), (190, 20, 20)


class PdfError(RuntimeError):
    """The report cannot be drawn here (no CJK font installed); the message says what to install."""


def render_report_pdf(
    doc: dict[str, Any],
    *,
    station_name: str,
    centre_name: str,
    key_images: Sequence[bytes] = (),
    ecg_strip: bytes | None = None,
    language: str = "zh",
    timezone: str = "Asia/Shanghai",
    critical_name: str = "",
) -> bytes:
    """The report ``doc`` (a canonical document) as an A4 PDF, not yet signed.

    ``key_images`` are JPEGs (at most four are shown); ``ecg_strip`` a PNG from :func:`rhythm_strip`, placed at
    its true size (25 mm/s, 10 mm/mV). Labels are bilingual, ``language`` (``zh`` or ``en``) first; times are shown
    in ``timezone``; ``critical_name`` names the critical category (default: its code).
    """
    pdf = _ReportPdf(language)
    signed_at = datetime.fromisoformat(doc["signed_at"])
    title = _LABELS["title_ecg" if ecg_strip is not None else "title_imaging"]
    pdf.set_title(f"{title[0]} {title[1]} — {doc['study']['uid']}")
    pdf.set_author(doc["signer"]["display_name"])
    pdf.set_subject(doc["impression"][:200])
    pdf.set_creator("Telerad")
    pdf.set_lang("zh-CN" if language == "zh" else "en")
    pdf.set_creation_date(signed_at)
    pdf.add_page()

    pdf.set_font(pdf.font_name, size=15)
    pdf.set_text_color(*_INK)
    pdf.multi_cell(0, 8, centre_name, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font_size(12)
    pdf.multi_cell(0, 7, pdf.pair(title, sep="  "), align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.rule()

    patient, study = doc["patient"], doc["study"]
    sex = _SEXES.get(patient["sex"])
    pdf.grid([
        ("name", patient["name"].replace("^", " ").strip()),
        ("sex", pdf.pair(sex) if sex else patient["sex"]),
        ("birth_date", _date(patient["birth_date"])),
        ("patient_id", f"{patient['id']} ({patient['issuer']})"),
        ("station", station_name),
        ("study_date", _date(study["date"])),
        ("accession", study["accession_number"]),
        ("study_uid", study["uid"]),
    ])
    pdf.rule()

    if doc["fields"]:
        pdf.heading("fields")
        for key, value in doc["fields"].items():
            pdf.field_row(key, value if isinstance(value, str) else _compact(value))
    pdf.section("findings", doc["findings"])
    pdf.section("impression", doc["impression"], size=11)
    if doc["critical"]:
        pdf.heading("critical", colour=_RED)
        pdf.set_text_color(*_RED)
        pdf.multi_cell(0, 6, critical_name or doc["critical_category"] or "—", align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(*_INK)
    if doc["addenda"]:
        pdf.heading("addenda")
        for item in doc["addenda"]:
            when = _local(datetime.fromisoformat(item["signed_at"]), timezone)
            pdf.note(f"{item['author']} · {when}", item["text"])
    if doc["addendum"] is not None:
        pdf.heading("addendum")
        pdf.note(doc["addendum"]["author"], doc["addendum"]["text"])

    if ecg_strip is not None:
        pdf.strip(ecg_strip)
    elif key_images:
        pdf.images(key_images[:KEY_IMAGES])

    signer = doc["signer"]
    pdf.ln(3)
    pdf.rule()
    pdf.grid([
        ("signer", f"{signer['display_name']} ({signer['name']})"),
        ("role", pdf.pair(_ROLES.get(signer["role"], (signer["role"], signer["role"])))),
        ("signed_at", _local(signed_at, timezone)),
        ("fingerprint", " ".join(signer["fingerprint"][i : i + 8] for i in range(0, 64, 8))),
    ], columns=2)
    return bytes(pdf.output())


def sign_pdf(
    pdf_bytes: bytes, reader_signer: ReaderSigner, *, reason: str, location: str, signed_at: datetime
) -> bytes:
    """``pdf_bytes`` with a PAdES B-B signature by ``reader_signer`` added as an incremental update (see the module).

    ``signed_at`` (the server's time of signature) becomes the signature dictionary's ``/M``.
    """
    metadata = signers.PdfSignatureMetadata(
        field_name="TeleradSignature", reason=reason, location=location, md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
    )
    pdf_signer = signers.PdfSigner(metadata, reader_signer.cms_signer())
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf_bytes))

    async def sign() -> io.BytesIO:
        # pyHanko's signing steps (as PdfSigner.async_sign_pdf), with the signing time from the server's clock.
        session = pdf_signer.init_signing_session(writer)
        session.system_time = signed_at
        validation = await session.perform_presign_validation(writer)
        reserved = await session.estimate_signature_container_size(validation, tight=False)
        tbs = session.prepare_tbs_document(validation_info=validation, bytes_reserved=reserved)
        digest, output = tbs.digest_tbs_document()
        after = await tbs.perform_signature(
            document_digest=digest.document_digest, pdf_cms_signed_attrs=PdfCMSSignedAttributes(signing_time=signed_at)
        )
        await after.post_signature_processing(output)
        return output

    return run_coroutine(sign()).getvalue()


def validate_pdf(
    data: bytes, *, trust_roots: list[x509.Certificate], moment: datetime, certificate: x509.Certificate
) -> list[str]:
    """What is wrong with the signed PDF ``data`` (nothing: an empty list).

    It must hold exactly one signature, intact and valid, covering the entire file, made with ``certificate``,
    which must lead to one of ``trust_roots`` and be valid at ``moment`` (pyHanko's validator).
    """
    try:
        signatures = PdfFileReader(io.BytesIO(data)).embedded_signatures
    except Exception as exc:  # noqa: BLE001 - a damaged PDF fails to parse in many ways; all mean "unreadable"
        return [f"the stored PDF cannot be read ({type(exc).__name__}: {exc})"]
    if len(signatures) != 1:
        return [f"the stored PDF holds {len(signatures)} signatures, not one"]
    context = ValidationContext(trust_roots=[to_asn1(root) for root in trust_roots], moment=moment)
    usage = KeyUsageConstraints(key_usage={"digital_signature", "non_repudiation"})  # either, as keys.SIGNING_USAGES
    status = run_coroutine(
        async_validate_pdf_signature(signatures[0], signer_validation_context=context, key_usage_settings=usage)
    )
    problems = []
    if not status.intact:
        problems.append("the PDF was changed after signature (its digest differs)")
    if not status.valid:
        problems.append("the PDF's signature value is invalid")
    if status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
        problems.append(f"the PDF's signature does not cover the entire file ({status.coverage.name})")
    if fingerprint(x509.load_der_x509_certificate(status.signing_cert.dump())) != fingerprint(certificate):
        problems.append("the PDF was signed with another certificate than the report's signature")
    elif not status.trusted:
        problems.append(f"the PDF's signing certificate is not trusted ({status.trust_problem_indic})")
    return problems


def key_images(session: Session, storage: FileStorage, study: Study, limit: int = KEY_IMAGES) -> list[bytes]:
    """Up to ``limit`` JPEGs of the study's images for the report: spread evenly over each image series."""
    by_series: dict[int, list[Instance]] = {}
    for instance in session.scalars(
        select(Instance).join(Series).where(Series.study_pk == study.id)
        .order_by(Series.series_number, Series.id, Instance.instance_number, Instance.id)
    ):
        if not is_waveform(instance):
            by_series.setdefault(instance.series_pk, []).append(instance)
    per_series = max(1, limit // max(1, len(by_series)))
    pictures = []
    for instances in by_series.values():
        for instance in _spread(instances, per_series):
            if len(pictures) == limit:
                return pictures
            try:
                image = open_image(storage.path(instance.storage_key))
                pictures.append(render(image, image.frames // 2, size=512, fmt="jpeg", quality=85))
            except RenderError:
                continue  # not an image (a structured report, a document): nothing to show
    return pictures


def study_rhythm_strip(session: Session, storage: FileStorage, study: Study) -> bytes | None:
    """The lead II rhythm strip of the study's 12-lead ECG, or ``None`` when it holds none."""
    for instance in session.scalars(
        select(Instance).join(Series).where(Series.study_pk == study.id).order_by(Instance.id)
    ):
        if is_waveform(instance):
            try:
                return rhythm_strip(read_ecg(dcmread(storage.path(instance.storage_key))))
            except EcgError:
                continue
    return None


def rhythm_strip(ecg: Ecg, lead: str = "II", *, seconds_per_row: float = 5.0, row_mm: float = 30.0) -> bytes:
    """A PNG of one lead on ECG paper: 1 mm and 5 mm grid, 25 mm/s, 10 mm/mV, a 1 mV calibration pulse per row.

    The PNG's resolution (``dpi``) gives its true size, so 1 mm on the grid prints as 1 mm.
    """
    samples, rate = ecg.leads[lead], ecg.sampling_frequency
    calibration_mm = 8.0
    rows = max(1, math.ceil(len(samples) / rate / seconds_per_row))
    width = round((calibration_mm + seconds_per_row * MM_PER_SECOND) * PX_PER_MM) + 1
    height = round(rows * row_mm * PX_PER_MM) + 1
    paper = np.full((height, width, 3), 255, dtype=np.uint8)
    paper[::PX_PER_MM, :] = paper[:, ::PX_PER_MM] = (250, 214, 214)
    paper[:: 5 * PX_PER_MM, :] = paper[:, :: 5 * PX_PER_MM] = (232, 150, 150)
    picture = PILImage.fromarray(paper)
    draw = ImageDraw.Draw(picture)
    per_row = round(seconds_per_row * rate)
    for row in range(rows):
        part = samples[row * per_row : (row + 1) * per_row]
        if not len(part):
            continue
        top, baseline = row * row_mm * PX_PER_MM, (row + 0.6) * row_mm * PX_PER_MM
        pulse = [(1, 0), (2, 0), (2, MM_PER_MV), (7, MM_PER_MV), (7, 0), (calibration_mm, 0)]
        draw.line([(x * PX_PER_MM, baseline - y * PX_PER_MM) for x, y in pulse], fill=(0, 0, 0), width=2)
        ys = baseline - (part - np.median(part)) * MM_PER_MV * PX_PER_MM
        ys = np.clip(ys, top + 1, top + row_mm * PX_PER_MM - 1)
        xs = (calibration_mm + np.arange(len(part)) / rate * MM_PER_SECOND) * PX_PER_MM
        draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=(0, 0, 0), width=2)
    out = io.BytesIO()
    picture.save(out, "PNG", dpi=(PX_PER_MM * 25.4, PX_PER_MM * 25.4))
    return out.getvalue()


class _ReportPdf(FPDF):
    """An A4 page with the report's blocks: bilingual labels, the page footer."""

    def __init__(self, language: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.language = language
        self.font_name = add_cjk_font(self)
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(True, margin=18)
        self.alias_nb_pages()

    def pair(self, texts: tuple[str, str], sep: str = " ") -> str:
        zh, en = texts
        return f"{zh}{sep}{en}" if self.language == "zh" else f"{en}{sep}{zh}"

    def footer(self) -> None:
        self.set_y(-13)
        self.set_font(self.font_name, size=7)
        self.set_text_color(*_GREY)
        page = _LABELS["page"]
        self.cell(0, 5, f"{self.pair(_LABELS['footer'], ' · ')}    {page[1]} {self.page_no()}/{{nb}}", align="C")

    def rule(self) -> None:
        self.set_draw_color(*_GREY)
        self.line(self.l_margin, self.get_y() + 1, self.w - self.r_margin, self.get_y() + 1)
        self.ln(3)

    def grid(self, items: list[tuple[str, str]], columns: int = 4) -> None:
        """Label over value, ``columns`` to a row."""
        width = (self.w - self.l_margin - self.r_margin) / columns
        for start in range(0, len(items), columns):
            row = items[start : start + columns]
            top = self.get_y()
            bottom = top
            for number, (label, value) in enumerate(row):
                self.set_xy(self.l_margin + number * width, top)
                self.set_font(self.font_name, size=7)
                self.set_text_color(*_GREY)
                self.multi_cell(width - 2, 4, self.pair(_LABELS[label]), align="L", new_x=XPos.LEFT, new_y=YPos.NEXT)
                self.set_font_size(9)
                self.set_text_color(*_INK)
                self.multi_cell(width - 2, 5, value or "—", align="L", new_x=XPos.LEFT, new_y=YPos.NEXT)
                bottom = max(bottom, self.get_y())
            self.set_xy(self.l_margin, bottom + 1)

    def heading(self, label: str, colour: tuple[int, int, int] = _INK) -> None:
        self.ln(2)
        self.set_font(self.font_name, size=10)
        self.set_text_color(*colour)
        self.cell(0, 6, self.pair(_LABELS[label]), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*_INK)

    def section(self, label: str, text: str, size: float = 10) -> None:
        self.heading(label)
        self.set_font(self.font_name, size=size)
        self.multi_cell(0, size * 0.55, text or "—", align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def field_row(self, key: str, value: str) -> None:
        self.set_font(self.font_name, size=8)
        self.set_text_color(*_GREY)
        self.cell(45, 5, key)
        self.set_font_size(9)
        self.set_text_color(*_INK)
        self.multi_cell(0, 5, value or "—", align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def note(self, caption: str, text: str) -> None:
        self.set_font(self.font_name, size=7)
        self.set_text_color(*_GREY)
        self.cell(0, 4, caption, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font_size(10)
        self.set_text_color(*_INK)
        self.multi_cell(0, 5.5, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def images(self, jpegs: Sequence[bytes]) -> None:
        gap, count = 3.0, KEY_IMAGES
        width = (self.w - self.l_margin - self.r_margin - gap * (count - 1)) / count
        sizes = [PILImage.open(io.BytesIO(jpeg)).size for jpeg in jpegs]
        height = max(width * rows / columns for columns, rows in sizes)
        self.heading("key_images")
        if self.will_page_break(height):
            self.add_page()
        top = self.get_y()
        for number, jpeg in enumerate(jpegs):
            self.image(io.BytesIO(jpeg), x=self.l_margin + number * (width + gap), y=top, w=width)
        self.set_y(top + height + 2)

    def strip(self, png: bytes) -> None:
        picture = PILImage.open(io.BytesIO(png))
        dpi = picture.info.get("dpi", (PX_PER_MM * 25.4,))[0]
        width, height = (pixels / dpi * 25.4 for pixels in picture.size)
        self.heading("strip")
        self.set_font(self.font_name, size=7)
        self.set_text_color(*_GREY)
        self.cell(0, 4, f"II · {MM_PER_SECOND:g} mm/s · {MM_PER_MV:g} mm/mV", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*_INK)
        if self.will_page_break(height):
            self.add_page()
        top = self.get_y()
        self.image(io.BytesIO(png), x=self.l_margin, y=top, w=width, h=height)
        self.set_y(top + height + 2)


@functools.cache
def cjk_font() -> tuple[Path, int]:
    """A font file covering Chinese and, in a collection, the index of its Simplified Chinese face."""
    found = next((path for path in FONT_CANDIDATES if path.is_file()), None)
    if found is None:
        try:
            listed = subprocess.run(["fc-list", ":lang=zh-cn", "file"], capture_output=True, text=True, timeout=10)
        except OSError:
            listed = None
        files = sorted(line.rstrip(": ").strip() for line in (listed.stdout.splitlines() if listed else []))
        found = next((Path(name) for name in files if name.lower().endswith((".ttf", ".otf", ".ttc"))), None)
    if found is None:
        raise PdfError("no font covering Chinese is installed: install Debian's fonts-noto-cjk")
    if found.suffix.lower() != ".ttc":
        return found, 0
    faces = TTCollection(str(found), lazy=True).fonts
    names = [face["name"].getDebugName(1) or "" for face in faces]
    return found, next((index for index, name in enumerate(names) if name.endswith(" SC")), 0)


def add_cjk_font(pdf: FPDF, family: str = "cjk") -> str:
    """Add the font of :func:`cjk_font` to ``pdf`` (embedded as a subset) as ``family``, and return ``family``."""
    path, index = cjk_font()
    pdf.add_font(family, "", str(path), collection_font_number=index)
    return family


def _spread(items: list[Instance], count: int) -> list[Instance]:
    if len(items) <= count:
        return items
    return [items[int((number + 0.5) * len(items) / count)] for number in range(count)]


def _date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value


def _local(moment: datetime, timezone: str) -> str:
    local = moment.astimezone(ZoneInfo(timezone))
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} ({timezone}, UTC{offset[:3]}:{offset[3:]})"


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key} {_compact(item)}" for key, item in value.items())
    if isinstance(value, list):
        return ", ".join(_compact(item) for item in value)
    return "—" if value is None else str(value)
