"""WADO-RS (PS3.18 10.4): instances, metadata, bulk data and frames of the studies the caller may see.

- ``GET /studies/{s}``, ``.../series/{se}``, ``.../instances/{i}``: ``multipart/related; type="application/dicom"``,
  one part per instance, each the stored PS3.10 file byte for byte, read from disk as it is sent. A request
  without a ``transfer-syntax`` parameter (or with ``*``) gets every instance as stored, the part's
  Content-Type naming its transfer syntax; one that asks for Explicit VR Little Endian gets instances stored
  otherwise decompressed into it (where pydicom can decode them); anything else is answered 406.
- ``.../metadata`` (study, series, instance): ``application/dicom+json``, one object per instance
  (PS3.18 F.2), large binary values as ``BulkDataURI`` into ``.../instances/{i}/bulk/{path}``.
- ``.../instances/{i}/frames/{list}``: ``multipart/related``, one part per frame — native
  (``type="application/octet-stream"``), or as stored (``transfer-syntax=*``, ``type="*/*"`` or the
  image type of the stored syntax, e.g. ``image/jp2``), the part's Content-Type naming its transfer syntax.

Retrievals of instances and of metadata are audited (``study.retrieved``, ``study.viewed``); the frames,
bulk data and rendered images a viewer fetches after the metadata are not (one row per frame would drown it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import BytesIO
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from flask import Response
from pydicom import dcmread
from pydicom.pixels import get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian
from sqlalchemy.orm import Session

from pacs_node.dicomweb import dicomweb
from pacs_node.dicomweb.dicom_json import PIXEL_DATA, dataset, key, read_header
from pacs_node.dicomweb.frames import NoFrames, PixelFrames
from pacs_node.dicomweb.media import (
    DICOM_JSON, EXPLICIT_LITTLE, accepted, covers, frame_media_type, not_acceptable, require_dicom_json,
)
from pacs_node.dicomweb.multipart import content_type, new_boundary, stream
from pacs_node.dicomweb.resources import (
    base_url, check_parameters, path_of, retrieve_url, stored_instances, transaction,
)
from telerad import audit
from telerad.problems import Problem
from telerad.users import User

CHUNK = 1 << 20
INSTANCE = "/studies/<study>/series/<series>/instances/<instance>"
_SWAPPED = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}  # bytes per word of binary VRs (PS3.5 7.3)


@dicomweb.get("/studies/<study>", defaults={"series": None, "instance": None})
@dicomweb.get("/studies/<study>/series/<series>", defaults={"instance": None})
@dicomweb.get(INSTANCE)
def retrieve(study: str, series: str | None, instance: str | None) -> Response:
    """Retrieve a study, series or instance (PS3.18 10.4.3.3.1): the stored files as a multipart message."""
    check_parameters({"accept"})
    choices = _instance_choices()
    with transaction() as (session, user):
        rows = stored_instances(session, user, study, series, instance)
        plan = [(row, path_of(row), _send_as(choices, row.transfer_syntax)) for row in rows]
        refused = sorted({row.transfer_syntax for row, _, sent in plan if sent is None})
        if refused:
            raise not_acceptable(
                f"instances stored as {', '.join(refused)}",
                ['multipart/related; type="application/dicom"; transfer-syntax=*',
                 f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_LITTLE}'],
            )
        _audit(session, user, "study.retrieved", study, series, instance, len(rows))
    base, boundary = base_url(), new_boundary()
    parts = (
        (
            {"Content-Type": f"application/dicom; transfer-syntax={sent}",
             "Content-Location": retrieve_url(base, row.study_uid, row.series_uid, row.sop_instance_uid)},
            _file(path) if sent == row.transfer_syntax else [_explicit_little(path)],
        )
        for row, path, sent in plan
    )
    return Response(stream(parts, boundary), content_type=content_type("application/dicom", boundary))


def _instance_choices() -> list[str]:
    """The transfer syntaxes acceptable for ``application/dicom`` parts, most preferred first (``*``: any)."""
    choices = [
        item.transfer_syntax or "*"
        for item in accepted()
        if item.is_multipart() and covers(item.part_type, "application/dicom")
    ]
    if not choices:
        raise not_acceptable("instances", ['multipart/related; type="application/dicom"'])
    return choices


def _send_as(choices: list[str], stored: str) -> str | None:
    """The transfer syntax to send an instance stored in ``stored`` in, or None if none acceptable."""
    for choice in choices:
        if choice in ("*", stored):
            return stored
        if choice == EXPLICIT_LITTLE and stored != ExplicitVRBigEndian and _decodable(stored):
            return EXPLICIT_LITTLE
    return None


def _decodable(transfer_syntax: str) -> bool:
    """Whether pydicom has a working decoder for pixel data in ``transfer_syntax`` (or needs none)."""
    if not UID(transfer_syntax).is_compressed:
        return True
    try:
        return get_decoder(UID(transfer_syntax)).is_available
    except NotImplementedError:
        return False


def _file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            yield chunk


def _explicit_little(path: Path) -> bytes:
    """A stored instance re-encoded in Explicit VR Little Endian, decompressing its pixel data if need be."""
    ds = dcmread(path)
    if UID(ds.file_meta.TransferSyntaxUID).is_compressed:
        ds.decompress()
    ds.file_meta.TransferSyntaxUID = EXPLICIT_LITTLE
    encoded = BytesIO()
    ds.save_as(encoded, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return encoded.getvalue()


@dicomweb.get("/studies/<study>/metadata", defaults={"series": None, "instance": None})
@dicomweb.get("/studies/<study>/series/<series>/metadata", defaults={"instance": None})
@dicomweb.get(f"{INSTANCE}/metadata")
def metadata(study: str, series: str | None, instance: str | None) -> Response:
    """Retrieve metadata (PS3.18 10.4.3.3.2): each instance's data set in the DICOM JSON model, streamed."""
    check_parameters({"accept"})
    require_dicom_json("metadata")
    with transaction() as (session, user):
        rows = stored_instances(session, user, study, series, instance)
        _audit(session, user, "study.viewed", study, series, instance, len(rows))
    base = base_url()
    instances = [
        (path_of(row), row.transfer_syntax, retrieve_url(base, row.study_uid, row.series_uid, row.sop_instance_uid))
        for row in rows
    ]

    def documents() -> Iterator[bytes]:
        yield b"["
        for number, (path, transfer_syntax, url) in enumerate(instances):
            document = instance_metadata(path, transfer_syntax, url)
            yield (b"," if number else b"") + json.dumps(document, ensure_ascii=False).encode()
        yield b"]"

    return Response(documents(), mimetype=DICOM_JSON)


def instance_metadata(path: Path, transfer_syntax: str, url: str) -> dict[str, Any]:
    """One instance's metadata, with its stored transfer syntax as Available Transfer Syntax UID (0008,3002)."""
    document = dataset(read_header(path), lambda where: f"{url}/bulk/{where}")
    document["00083002"] = {"vr": "UI", "Value": [transfer_syntax]}
    return dict(sorted(document.items()))


@dicomweb.get(f"{INSTANCE}/bulk/<path:where>")
def bulk(study: str, series: str, instance: str, where: str) -> Response:
    """Retrieve bulk data (PS3.18 10.4.3.3.5): a value a metadata ``BulkDataURI`` points to.

    Pixel Data is answered as the instance's frames, each frame a part.
    """
    check_parameters({"accept"})
    steps = where.strip("/").split("/")
    if not _is_bulk_path(steps):
        raise Problem(404, f"{where!r} is not a bulk data path (tag, or tag/item/tag ..., tags as 8 hex digits)")
    with transaction() as (session, user):
        row = stored_instances(session, user, study, series, instance)[0]
    url = retrieve_url(base_url(), study, series, instance)
    if steps == [key(PIXEL_DATA)]:
        return _frames(path_of(row), row.transfer_syntax, url, None)
    if not any(item.is_multipart() and covers(item.part_type, "application/octet-stream") for item in accepted()):
        raise not_acceptable("bulk data", ['multipart/related; type="application/octet-stream"'])
    value = _bulk_value(path_of(row), steps)
    if value is None:
        raise Problem(404, f"instance {instance} has no binary value at {where}")
    boundary = new_boundary()
    parts = [({"Content-Type": f"application/octet-stream; transfer-syntax={EXPLICIT_LITTLE}",
               "Content-Location": f"{url}/bulk/{where}"}, [value])]
    return Response(stream(parts, boundary), content_type=content_type("application/octet-stream", boundary))


def _is_bulk_path(steps: list[str]) -> bool:
    tags_ok = all(len(step) == 8 and all(c in "0123456789abcdefABCDEF" for c in step) for step in steps[::2])
    return len(steps) % 2 == 1 and tags_ok and all(step.isdigit() for step in steps[1::2])


def _bulk_value(path: Path, steps: list[str]) -> bytes | None:
    """The binary value at ``steps`` (tag, item, tag ...) of a stored file, little endian."""
    ds = read_header(path)
    little_endian = ds.original_encoding[1] is not False
    target: Any = ds
    for number, step in enumerate(steps):
        if number % 2:
            index = int(step)
            if index >= len(target):
                return None
            target = target[index]
            continue
        tag = int(step, 16)
        if tag not in target:
            return None
        target = target[tag]
        if number < len(steps) - 1:
            target = target.value if target.VR == "SQ" else []
    if not isinstance(target.value, bytes):
        return None
    size = _SWAPPED.get(target.VR)
    if little_endian or size is None:
        return target.value
    return np.frombuffer(target.value, dtype=f">u{size}").astype(f"<u{size}").tobytes()


@dicomweb.get(f"{INSTANCE}/frames/<frame_list>")
def frames(study: str, series: str, instance: str, frame_list: str) -> Response:
    """Retrieve frames, a Pixel Data resource (PS3.18 10.4.3.3.6): the listed frames (``1,2,3``), a part each."""
    check_parameters({"accept"})
    numbers = frame_numbers(frame_list)
    with transaction() as (session, user):
        row = stored_instances(session, user, study, series, instance)[0]
    return _frames(path_of(row), row.transfer_syntax, retrieve_url(base_url(), study, series, instance), numbers)


def frame_numbers(frame_list: str) -> list[int]:
    """The frame numbers of a frame list (positive integers, comma-separated)."""
    try:
        numbers = [int(item) for item in frame_list.split(",")]
    except ValueError:
        numbers = []
    if not numbers or min(numbers) < 1:
        raise Problem(400, f"frame list {frame_list!r}: expected frame numbers from 1, comma-separated")
    return numbers


def _frames(path: Path, transfer_syntax: str, url: str, numbers: list[int] | None) -> Response:
    """The frames ``numbers`` (all when None) of the instance at ``url``, each part saying its frame URL."""
    instance = url.rsplit("/", 1)[1]
    try:
        pixels = PixelFrames(path, transfer_syntax)
    except NoFrames:
        raise Problem(404, f"instance {instance} has no frames: it has no Pixel Data") from None
    except ValueError as exc:
        raise Problem(422, f"the frames of instance {instance} cannot be read: {exc}") from None
    numbers = numbers or list(range(1, pixels.count + 1))
    missing = [number for number in numbers if number > pixels.count]
    if missing:
        raise Problem(404, f"instance {instance} has no frame {missing[0]}: it has {pixels.count}")
    as_stored, part_type = _frame_encoding(transfer_syntax, pixels.compressed)
    encoded = pixels.stored(numbers) if as_stored else pixels.native(numbers)
    try:
        first = next(encoded)  # a frame that cannot be decoded is answered before the message starts
    except Exception as exc:  # noqa: BLE001 - the pixel data handlers raise many kinds on bad data
        raise not_acceptable(
            f"frame {numbers[0]} cannot be decoded ({exc}); it",
            _stored_frame_types(transfer_syntax),
        ) from None
    boundary = new_boundary()
    parts = (
        ({"Content-Type": part_type, "Content-Location": f"{url}/frames/{number}"}, [frame])
        for number, frame in zip(numbers, chain([first], encoded), strict=True)
    )
    return Response(stream(parts, boundary), content_type=content_type(part_type.split(";")[0], boundary))


def _frame_encoding(transfer_syntax: str, compressed: bool) -> tuple[bool, str]:
    """Whether to send frames as stored, and the Content-Type of each part, as the request prefers."""
    native = (False, f"application/octet-stream; transfer-syntax={EXPLICIT_LITTLE}")
    image_type = frame_media_type(transfer_syntax)
    for item in accepted():
        if not item.is_multipart():
            continue
        wanted, syntax = item.part_type, item.transfer_syntax
        octet_stream = covers(wanted, "application/octet-stream")
        # Stored frames are wanted by "*" or their own syntax, or by a media type other than plain octet-stream.
        as_stored = syntax in ("*", transfer_syntax) or (syntax is None and wanted != "application/octet-stream")
        if compressed and as_stored:
            if covers(wanted, image_type):
                return True, f"{image_type}; transfer-syntax={transfer_syntax}"
            if octet_stream:
                return True, f"application/octet-stream; transfer-syntax={transfer_syntax}"
        if octet_stream and syntax in (None, "*", EXPLICIT_LITTLE):
            return native
    supported = ['multipart/related; type="application/octet-stream"']
    raise not_acceptable("frames", supported + (_stored_frame_types(transfer_syntax) if compressed else []))


def _stored_frame_types(transfer_syntax: str) -> list[str]:
    return [
        'multipart/related; type="application/octet-stream"; transfer-syntax=*',
        f'multipart/related; type="{frame_media_type(transfer_syntax)}"; transfer-syntax={transfer_syntax}',
    ]


def _audit(
    session: Session, user: User, action: str, study: str, series: str | None, instance: str | None, count: int
) -> None:
    level = "instance" if instance else "series" if series else "study"
    audit.record(
        session, user.name, action, "study", study, via="dicomweb", level=level, instances=count,
        **({"series": series} if series else {}), **({"instance": instance} if instance else {}),
    )
