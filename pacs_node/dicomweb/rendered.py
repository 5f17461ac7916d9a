"""Rendered resources and thumbnails (PS3.18 10.4.3.3.3 and 10.4.3.3.4), drawn by the injected renderer.

- ``.../instances/{i}/rendered`` (its first frame) and ``.../instances/{i}/frames/{n}/rendered``: one frame
  as ``image/jpeg`` (the default), ``image/png`` or ``image/webp``, with the parameters of PS3.18 8.3.5.1:
  ``window=center,width[,linear]``, ``viewport=vw,vh`` (the image scaled to fit, never enlarged) and
  ``quality`` (1-100). A source region in ``viewport`` and other window shapes are refused (400);
  ``annotation``, ``iccprofile`` and ``charset``, which a server need not support (8.3.5.1), are ignored.
- ``/studies/{s}/thumbnail``, ``.../series/{se}/thumbnail``, ``.../instances/{i}/thumbnail``: the middle
  instance of the (first) series, at most :data:`THUMBNAIL_SIZE` pixels or the ``viewport``.

The renderer belongs to the viewer (``render(path, frame_index, *, window, size, fmt, quality)``); without
one these resources answer 501, and an instance it cannot draw (no pixel data ...) 422.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from flask import Response, request
from pydicom.datadict import tag_for_keyword
from sqlalchemy import Row

from pacs_node.dicomweb import dicomweb
from pacs_node.dicomweb.dicom_json import read_header
from pacs_node.dicomweb.frames import frame_count
from pacs_node.dicomweb.media import accepted, covers, not_acceptable
from pacs_node.dicomweb.resources import backend, check_parameters, path_of, stored_instances, transaction
from pacs_node.dicomweb.wado import INSTANCE, frame_numbers
from telerad.problems import Problem

FORMATS = {"image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp"}
THUMBNAIL_SIZE = 128
DEFAULT_QUALITY = 85
IGNORED = ("annotation", "iccprofile", "charset")
_GEOMETRY = [tag_for_keyword(keyword) for keyword in ("Rows", "Columns", "NumberOfFrames")]


@dicomweb.get(f"{INSTANCE}/rendered", defaults={"frame_list": "1"})
@dicomweb.get(f"{INSTANCE}/frames/<frame_list>/rendered")
def rendered(study: str, series: str, instance: str, frame_list: str) -> Response:
    """Retrieve a rendered instance or frame (PS3.18 10.4.3.3.3)."""
    check_parameters({"accept", "window", "viewport", "quality", *IGNORED})
    numbers = frame_numbers(frame_list)
    if len(numbers) > 1:
        raise Problem(400, f"frame list {frame_list!r}: a rendered image shows one frame")
    window = _window()
    quality = _quality()
    with transaction() as (session, user):
        row = stored_instances(session, user, study, series, instance)[0]
    return _render(row, numbers[0], window, _viewport(), quality)


@dicomweb.get("/studies/<study>/thumbnail", defaults={"series": None, "instance": None})
@dicomweb.get("/studies/<study>/series/<series>/thumbnail", defaults={"instance": None})
@dicomweb.get(f"{INSTANCE}/thumbnail")
def thumbnail(study: str, series: str | None, instance: str | None) -> Response:
    """Retrieve a thumbnail of a study, series or instance (PS3.18 10.4.3.3.4)."""
    check_parameters({"accept", "viewport", *IGNORED})
    viewport = _viewport() or (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    with transaction() as (session, user):
        rows = stored_instances(session, user, study, series, instance)
    first_series = [row for row in rows if row.series_uid == rows[0].series_uid]
    return _render(first_series[len(first_series) // 2], 1, None, viewport, DEFAULT_QUALITY)


def _render(
    row: Row[Any], number: int, window: tuple[float, float] | None, viewport: tuple[int, int] | None, quality: int
) -> Response:
    media_type, fmt = _format()
    render = backend().render
    if render is None:
        raise Problem(501, "this server has no image renderer configured; retrieve frames instead")
    path = path_of(row)
    try:
        rows, columns, count = _geometry(path)
    except ValueError as exc:
        raise Problem(422, f"instance {row.sop_instance_uid} cannot be rendered: {exc}") from None
    if number > count:
        raise Problem(404, f"instance {row.sop_instance_uid} has no frame {number}: it has {count}")
    size = None
    if viewport is not None and rows and columns:
        size = max(1, math.floor(max(rows, columns) * min(viewport[0] / columns, viewport[1] / rows)))
    try:
        image = render(path, number - 1, window=window, size=size, fmt=fmt, quality=quality)
    except ValueError as exc:
        raise Problem(422, f"instance {row.sop_instance_uid} cannot be rendered: {exc}") from None
    return Response(image, mimetype=media_type)


def _format() -> tuple[str, str]:
    """The image media type the request prefers among those rendered (JPEG for a wildcard)."""
    for item in accepted():
        for media_type, fmt in FORMATS.items():
            if covers(item.media_type, media_type):
                return media_type, fmt
    raise not_acceptable("rendered images", list(FORMATS))


def _geometry(path: Path) -> tuple[int, int, int]:
    """Rows, Columns and Number of Frames of a stored instance (0, 0, 1 when it has no image)."""
    ds = read_header(path, tags=_GEOMETRY)
    return int(ds.get("Rows") or 0), int(ds.get("Columns") or 0), frame_count(ds)


def _numbers(name: str, count: int) -> list[float] | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        values = [float(item) for item in raw.split(",")[:count]]
    except ValueError:
        raise Problem(400, f"{name}: {raw!r} is not a list of numbers", parameter=name) from None
    if len(values) < count or not all(math.isfinite(value) for value in values):
        raise Problem(400, f"{name}: expected {count} numbers, comma-separated", parameter=name)
    return values


def _window() -> tuple[float, float] | None:
    """``window=center,width[,function]`` (PS3.18 8.3.5.1); only the linear shape (PS3.3 C.11.2.1.2)."""
    values = _numbers("window", 2)
    if values is None:
        return None
    parts = request.args["window"].split(",")
    if len(parts) > 3 or (len(parts) == 3 and parts[2].strip().lower() != "linear"):
        raise Problem(400, "window: expected center,width[,linear] (other VOI functions are not supported)",
                      parameter="window")
    if values[1] < 1:
        raise Problem(400, "window: the width must be at least 1", parameter="window")
    return values[0], values[1]


def _viewport() -> tuple[int, int] | None:
    """``viewport=vw,vh`` (PS3.18 8.3.5.1); a source region is not supported."""
    values = _numbers("viewport", 2)
    if values is None:
        return None
    if len(request.args["viewport"].split(",")) != 2 or min(values) < 1 or not all(v.is_integer() for v in values):
        raise Problem(400, "viewport: expected vw,vh, two whole numbers of pixels (no source region)",
                      parameter="viewport")
    return int(values[0]), int(values[1])


def _quality() -> int:
    raw = request.args.get("quality", str(DEFAULT_QUALITY))
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise Problem(400, "quality: expected a whole number from 1 to 100", parameter="quality")
    return int(raw)
