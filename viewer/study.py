"""The study viewer: the page that opens a study (CT, CR, DX images, or a 12-lead ECG) and the data it loads.

- ``GET /studies/<uid>`` — the image viewer, or the ECG view when the study is read as an ECG;
- ``GET /viewer/studies/<uid>`` — series and instances in display order, patient, study and acquisition
  details, the caller's task and the patient's priors (JSON; the view is audited);
- ``GET /viewer/instances/<sop>/frames/<n>.<jpeg|png|webp>`` — frame ``n`` (1-based, as WADO-RS numbers
  frames) rendered on the server with a window (PS3.3 C.11.2), inversion, size and quality;
- ``GET /viewer/instances/<sop>/frames/<n>/roi`` — mean, SD and area of an ellipse in modality units;
- ``GET /viewer/instances/<sop>/ecg`` — the ECG's samples and the device's and Telerad's measurements.

Every request asks :mod:`reading_queue.access` through :mod:`viewer.study_data`; an unknown study and a hidden
one both answer 404. JSON errors are RFC 9457 problem details: bad parameters 400, pixels or waveforms that
cannot be read 422 with the reason.

A rendered frame's URL names the instance's content (``v``, the start of its SHA-256), so the response can
never change and browsers keep it for a year without asking again; a URL without ``v`` is revalidated with
its strong ETag instead.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Blueprint, Response, abort, current_app, jsonify, render_template, request, url_for
from flask.blueprints import BlueprintSetupState
from flask_babel import gettext as _
from flask_login import login_required
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from pacs_node.node import storage_for
from reading_queue.tasks import note_opening
from telerad import audit
from telerad.auth import user_in
from telerad.problems import Problem, problem_response
from telerad.users import User
from viewer.ecg import EcgError, ecg_payload, read_ecg
from viewer.ecg_measurements import computed_for
from viewer.rendering import ImageCache, RenderError, Window, render, roi_stats
from viewer.study_data import NotVisible, StoredImages, study_document, viewer_kind, visible_instance, visible_study

study = Blueprint("study", __name__)

IMAGE_CACHE_BYTES = 384 * 2**20
IMMUTABLE = "private, max-age=31536000, immutable"
REVALIDATE = "private, no-cache"
#: Changes whenever rendering changes what a URL shows, so that ETags issued before no longer match.
RENDERING_REVISION = "1"
MIMETYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
MAX_SIZE = 8192


@study.record_once
def _bind(state: BlueprintSetupState) -> None:
    """One image cache per web process, over the configured storage area."""
    config = state.app.extensions["telerad.config"]
    cache = state.app.extensions.setdefault("viewer.image_cache", ImageCache(IMAGE_CACHE_BYTES))
    state.app.extensions["viewer.images"] = StoredImages(storage_for(config), cache)


def _images() -> StoredImages:
    return current_app.extensions["viewer.images"]


@contextmanager
def _viewing() -> Iterator[tuple[Session, User]]:
    """One transaction as the signed-in caller (a browser session or an API token); 401 for nobody."""
    with current_app.extensions["telerad.sessions"]() as session, session.begin():
        user = user_in(session)
        if user is None:
            raise Problem(401, "sign in, or send a valid API token as 'Authorization: Bearer <token>'")
        yield session, user


# --- the pages -----------------------------------------------------------------------------------


@study.get("/studies/<study_uid>")
@login_required
def page(study_uid: str) -> str:
    """The viewer page: images, or the ECG view for an ECG study. An unknown or hidden study is 404."""
    with _viewing() as (session, user):
        try:
            kind = viewer_kind(visible_study(session, user, study_uid))
        except NotVisible:
            abort(404)
    messages = (*SHARED_MESSAGES, *REPORT_MESSAGES, *(ECG_MESSAGES if kind == "ecg" else IMAGE_MESSAGES))
    return render_template(
        "ecg.html" if kind == "ecg" else "study.html",
        study_uid=study_uid,
        messages={message: _(message) for message in messages},
        urls={
            "study": url_for("study.study_data", study_uid="__STUDY__"),
            "page": url_for("study.page", study_uid="__STUDY__"),
            "frame": url_for("study.rendered_frame", sop_uid="__SOP__", frame="__FRAME__", fmt="jpeg"),
            "roi": url_for("study.roi", sop_uid="__SOP__", frame="__FRAME__"),
            "ecg": url_for("study.ecg", sop_uid="__SOP__"),
        },
    )


# --- the data ------------------------------------------------------------------------------------


@study.get("/viewer/studies/<study_uid>")
def study_data(study_uid: str) -> Response:
    """The study as the viewer shows it (:func:`viewer.study_data.study_document`); opening it is audited."""
    with _viewing() as (session, user):
        shown = visible_study(session, user, study_uid)
        body = study_document(session, user, shown, _images())
        audit.record(session, user.name, "study.viewed", "study", study_uid, via="viewer")
        note_opening(session, shown.id, user.role, user.name)
    response = jsonify(body)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@study.get("/viewer/instances/<sop_uid>/frames/<frame>.<fmt>")
def rendered_frame(sop_uid: str, frame: str, fmt: str) -> Response:
    """Frame ``frame`` (1-based) of an instance as JPEG, PNG or WebP, windowed on the server.

    Query: ``wc`` and ``ww`` (window centre and width in modality units, both or neither; default the
    image's own), ``invert`` (0/1), ``size`` (longest side in pixels, never enlarged), ``q`` (quality 1-100
    for JPEG and WebP, default 85), ``v`` (the instance version the URL was made for).
    """
    if fmt not in MIMETYPES:
        raise _bad("format", f"expected one of {', '.join(MIMETYPES)}")
    number = _whole(frame, "frame", 1, None)
    window = _window()
    invert = _flag("invert")
    size = _int_arg("size", 1, MAX_SIZE)
    quality = _int_arg("q", 1, 100) or 85
    with _viewing() as (session, user):
        instance = visible_instance(session, user, sop_uid)
    cache_control = _version_cache_control(instance.sha256)
    params = f"{RENDERING_REVISION}|{number}|{fmt}|{window}|{invert}|{size}|{quality}"
    etag = hashlib.sha256(f"{instance.sha256}|{params}".encode()).hexdigest()
    if request.if_none_match.contains(etag):
        return _not_modified(etag, cache_control)
    image = _images().image(instance)
    if number > image.frames:
        raise _bad("frame", f"the instance has {image.frames} frame(s)")
    data = render(image, number - 1, window=window, invert=invert, size=size, fmt=fmt, quality=quality)
    response = Response(data, mimetype=MIMETYPES[fmt])
    response.set_etag(etag)
    response.headers["Cache-Control"] = cache_control
    return response


@study.get("/viewer/instances/<sop_uid>/frames/<frame>/roi")
def roi(sop_uid: str, frame: str) -> Response:
    """Mean, SD, minimum, maximum, pixel count and area of an ellipse ROI in modality units (HU for CT).

    Query: ``cx``, ``cy`` (centre) and ``rx``, ``ry`` (radii along columns and rows), in image pixel
    coordinates where pixel (row r, column c) covers [c, c+1) × [r, r+1).
    """
    number = _whole(frame, "frame", 1, None)
    cx, cy = _real("cx"), _real("cy")
    rx, ry = _real("rx", positive=True), _real("ry", positive=True)
    with _viewing() as (session, user):
        instance = visible_instance(session, user, sop_uid)
    image = _images().image(instance)
    if number > image.frames:
        raise _bad("frame", f"the instance has {image.frames} frame(s)")
    stats = roi_stats(image, number - 1, cx, cy, rx, ry)
    response = jsonify(
        mean=stats.mean, sd=stats.sd, minimum=stats.minimum, maximum=stats.maximum, pixels=stats.pixels,
        area_mm2=stats.area_mm2, area_source=stats.area_source, unit=stats.unit,
    )
    response.headers["Cache-Control"] = _version_cache_control(instance.sha256)
    return response


@study.get("/viewer/instances/<sop_uid>/ecg")
def ecg(sop_uid: str) -> Response:
    """The ECG's leads in integer µV, the device's measurements and Telerad's.

    ``computed_status`` is ``"done"``, ``"failed"`` (the worker could not measure it; ``computed.error``
    says why) or ``"computing"`` until the worker has measured this version of the file. ``samples=0``
    leaves the leads out (to ask again for the measurements only).
    """
    samples = _flag("samples", default=True)
    with _viewing() as (session, user):
        instance = visible_instance(session, user, sop_uid)
        computed = computed_for(session, sop_uid)
    if computed is not None and computed.sha256 != instance.sha256:
        computed = None  # measured an earlier version of the file: the worker is at it again
    payload = ecg_payload(read_ecg(_images().dataset(instance)), computed)
    payload["computed_status"] = "computing" if computed is None else "failed" if computed.error else "done"
    if not samples:
        del payload["samples"]
    response = jsonify(payload)
    response.headers["Cache-Control"] = REVALIDATE
    return response


# --- parameters ----------------------------------------------------------------------------------


def _bad(name: str, reason: str) -> Problem:
    return Problem(400, f"{name}: {reason}", parameter=name)


def _whole(raw: str, name: str, low: int, high: int | None) -> int:
    """``raw`` as a whole number from ``low`` to ``high``; else a 400 naming ``name``."""
    try:
        value = int(raw)
        if value < low or (high is not None and value > high):
            raise ValueError(raw)
    except ValueError:
        raise _bad(name, f"expected a whole number from {low}" + (f" to {high}" if high else "")) from None
    return value


def _int_arg(name: str, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    return None if raw is None else _whole(raw, name, low, high)


def _real(name: str, positive: bool = False) -> float:
    """A required finite number (positive if asked); else a 400 naming ``name``."""
    raw = request.args.get(name)
    try:
        value = float(raw)  # type: ignore[arg-type]
        if not math.isfinite(value) or (positive and value <= 0):
            raise ValueError(raw)
    except (TypeError, ValueError):
        raise _bad(name, "expected a positive number" if positive else "expected a number") from None
    return value


def _window() -> Window | None:
    """The ``wc``/``ww`` window, both or neither."""
    if "wc" not in request.args and "ww" not in request.args:
        return None
    center, width = _real("wc"), _real("ww", positive=True)
    return Window(center, width)


def _flag(name: str, default: bool = False) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return default
    if raw.lower() not in ("0", "1", "true", "false"):
        raise _bad(name, "expected 0 or 1")
    return raw.lower() in ("1", "true")


def _version_cache_control(sha256: str) -> str:
    """Immutable when the URL names this content (``v``); a URL naming replaced content is a 409."""
    version = request.args.get("v")
    if version is None:
        return REVALIDATE
    if len(version) < 8 or not sha256.startswith(version.lower()):
        raise Problem(409, "the instance was replaced since this address was made; reload the study", parameter="v")
    return IMMUTABLE


def _not_modified(etag: str, cache_control: str) -> Response:
    response = Response(status=304)
    response.set_etag(etag)
    response.headers["Cache-Control"] = cache_control
    return response


# --- errors --------------------------------------------------------------------------------------


@study.errorhandler(Problem)
def _on_problem(exc: Problem) -> Response:
    return problem_response(exc.status, exc.detail, **exc.extra)


@study.errorhandler(NotVisible)
def _on_not_visible(exc: NotVisible) -> Response:
    """Unknown and hidden look the same (existence is not revealed)."""
    return problem_response(404, str(exc))


@study.errorhandler(RenderError)
@study.errorhandler(EcgError)
def _on_unreadable(exc: RenderError | EcgError) -> Response:
    return problem_response(422, str(exc))


@study.errorhandler(HTTPException)
def _on_http(exc: HTTPException) -> Response | HTTPException:
    """Data requests get problem details; the pages keep Flask's HTML answers."""
    if not request.path.startswith("/viewer/"):
        return exc
    return problem_response(exc.code or 500, exc.description or "")


# --- messages the scripts show (translated in study.po) ------------------------------------------


def N_(message: str) -> str:  # noqa: N802 - the gettext marker that message extraction knows
    """Mark ``message`` for translation where it is only named (translated when a page is rendered)."""
    return message


#: common.js and details.js, on both pages.
SHARED_MESSAGES = (
    N_("{h} h {m} min"), N_("{m} min"), N_("overdue by {time}"),
    N_("Name"), N_("Patient ID"), N_("Sex"), N_("Age"), N_("Birth date"), N_("male"), N_("female"), N_("other"),
    N_("{n} years"), N_("{n} months"), N_("{n} weeks"), N_("{n} days"),
    N_("Study date"), N_("Description"), N_("Modalities"), N_("Accession number"), N_("Sent by"),
    N_("Referring physician"), N_("Modality"), N_("Body part"), N_("Protocol"), N_("Series"), N_("Institution"),
    N_("Station name"), N_("Manufacturer"), N_("Model"), N_("Acquisition date"), N_("Acquisition time"),
    N_("Tube voltage (kV)"), N_("Tube current (mA)"), N_("Exposure time (ms)"), N_("Exposure (mAs)"),
    N_("Slice thickness (mm)"), N_("Spacing between slices (mm)"), N_("Reconstruction kernel"),
    N_("Contrast agent"), N_("Patient position"), N_("View"), N_("Source to detector (mm)"), N_("Operator"),
    N_("Performing physician"), N_("STAT"), N_("Urgent"), N_("Routine"), N_("due {when}"),
    N_("being read by {name}"), N_("not yet claimed"), N_("Open"), N_("Open side by side"),
    N_("The study could not be loaded: {reason}"),
)

#: viewer.js, viewport.js and measure.js.
IMAGE_MESSAGES = (
    N_("Current study"), N_("Prior: {date} {description}"), N_("The prior study could not be opened: {reason}"),
    N_("Series {n}"), N_("{n} images"), N_("Play"), N_("Pause"), N_("Delete"), N_("image {n}"), N_("prior"),
    N_("current"), N_("This series has no images to show."), N_("This study has no series."),
    N_("This image cannot be shown: {reason}"), N_("W {width} L {center}"), N_("Zoom {percent}%"),
    N_("measuring…"), N_("ROI not measured: {reason}"), N_("PixelSpacing"), N_("ImagerPixelSpacing (at detector)"),
    N_("no pixel spacing: in pixels"), N_("Length {value} mm ({source})"), N_("Length {value} px ({source})"),
    N_("Angle {value}°"), N_("area {value} mm²"), N_("area {value} px"), N_("ROI mean {mean} ± {sd}{unit}, {area}"),
)

#: ecg.js.
ECG_MESSAGES = (
    N_("rhythm"), N_("drag across the tracing to measure time and amplitude"), N_("Δt {ms} ms"),
    N_("Δ amplitude {mv} mV"), N_("{bpm} beats/min if this is one RR interval"), N_("Device"),
    N_("Computed by Telerad"), N_("being computed…"), N_("Heart rate"), N_("RR interval"), N_("PR interval"),
    N_("QRS duration"), N_("QT interval"), N_("QTc (device's formula)"), N_("QTc Bazett"), N_("QTc Fridericia"),
    N_("P axis"), N_("QRS axis"), N_("T axis"),
    N_("Telerad measures every ECG after it arrives; its figures appear here by themselves."),
    N_("Telerad's figures come from a median beat of all twelve leads ({beats} beats)."),
    N_("Telerad could not measure this ECG: {reason}"),
    N_("This study holds no ECG waveform."), N_("The ECG cannot be shown: {reason}"),
)

#: report.js, the report editor on both pages (translated in report.po).
REPORT_MESSAGES = (
    N_("Draft"), N_("Preliminary: waiting for the countersignature"), N_("Final"), N_("Final, with addenda"),
    N_("Signed by"), N_("Countersigned by"), N_("Co-signed by"),
    N_("You have been signed out. Sign in again, then try once more."),  # translated in worklist.po
    N_("Sign the report"), N_("Sign"), N_("The report is not signed: {reason}"),
    N_("Countersign the report"), N_("Countersign"), N_("The report is not countersigned: {reason}"),
    N_("Sign the addendum"), N_("The addendum is not signed: {reason}"),
    N_("Co-sign the report"), N_("Co-sign"), N_("The report is not co-signed: {reason}"),
    N_("Saved {time}"), N_("Saving…"), N_("Not saved yet"), N_("Not saved: {reason}"), N_("Signed {time}"),
    N_("The draft saves itself as you type."), N_("Read only: you may not write this report."),
    N_("Signed: the report can no longer be changed."), N_("Signed by {name} at {time}"),
    N_("The report was changed elsewhere (revision {revision}); the saved version is shown again."),
    N_("Your last changes were not saved."), N_("The report was signed elsewhere; it can no longer be changed."),
    N_("The report could not be loaded: {reason}"), N_("the server cannot be reached"),
    N_("Choose the category of the critical finding before signing."),
    N_("Fill in {field} before signing."),
    N_("The draft could not be saved, so it cannot be signed yet."), N_("Write the addendum first."),
    N_("Enter your password."), N_("Wrong password: nothing was signed. Enter the password you sign in with."),
    N_("You may not do this: {reason}"),
    N_("Rate, intervals and axis are prefilled from Telerad's own measurements."),
    N_("Rate, intervals and axis are prefilled from the ECG device's measurements (Telerad could not measure this "
       "tracing)."),
    N_("Telerad is still measuring this ECG: open the report again in a moment for the figures."),
)
