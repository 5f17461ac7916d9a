"""The study viewer's data and images as the page's scripts load them: signed in through the real form, real
files sent through the node, every answer checked against what the access rules allow and against pixels
computed independently here with pydicom and numpy."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from werkzeug.test import TestResponse

from dicom_files import copy_with_new_uids, send, series_from
from pacs_node.node import Receiver
from telerad.audit import AuditEvent
from telerad.config import Config
from alliance import CT, ECG, Alliance, assert_problem
from web_client import Browser, text_of
from viewer import jobs


CT_SLICES = 6
CT_PATIENT = "99000"


def series_instances(answer: TestResponse, index: int = 0) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.json["series"][index]["instances"]


def frame_path(instance: dict[str, Any], frame: int = 1, fmt: str = "jpeg") -> str:
    return f"/viewer/instances/{instance['sop_uid']}/frames/{frame}.{fmt}"


def pixels(answer: TestResponse) -> np.ndarray:
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return np.asarray(Image.open(io.BytesIO(answer.data)), dtype=np.float64)


@pytest.fixture
def ct_study(alliance: Alliance, node: Receiver, data: Path, tmp_path: Path) -> tuple[str, list[Path]]:
    """A six-slice CT made from a real three-slice series, sent through the node in reverse order, plus a DX
    series of the same patient whose only spacing is Imager Pixel Spacing; complete, with its reading task."""
    sources = sorted((data / "ct" / "series_JANCT000_3slice").glob("*.dcm"))
    paths = series_from(sources, tmp_path / "ct", CT_SLICES)
    study_uid = dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID
    dx = copy_with_new_uids(
        data / "xray" / "dx_image_highdicom_Fujifilm.dcm", tmp_path / "dx", StudyInstanceUID=study_uid,
        PatientID=CT_PATIENT, PatientName="JANCT000", PatientSex="M", PatientBirthDate="", SeriesNumber=99,
        PixelSpacing=None,
    )
    statuses = send(node.config.dicom.port, "DG_CT", *reversed(paths), dx)
    assert [status.Status for status in statuses] == [0] * (CT_SLICES + 1)
    alliance.complete(study_uid)
    return study_uid, paths


def test_the_study_lists_its_series_and_instances_in_order_with_spacing_and_its_source(
    alliance: Alliance, ct_study: tuple[str, list[Path]], browser: Callable[[str], Browser], sessions: sessionmaker
) -> None:
    study_uid, paths = ct_study
    answer = browser("reader-ct").get(f"/viewer/studies/{study_uid}")
    body = answer.json
    assert answer.headers["Cache-Control"] == "private, no-store"
    assert body["viewer"] == "image"
    assert [series["modality"] for series in body["series"]] == ["CT", "DX"]

    ct = series_instances(answer)
    expected = [dcmread(path, stop_before_pixels=True) for path in paths]
    assert [item["sop_uid"] for item in ct] == [ds.SOPInstanceUID for ds in expected]
    assert [item["number"] for item in ct] == list(range(1, CT_SLICES + 1))
    first = ct[0]
    assert (first["rows"], first["columns"], first["frames"], first["photometric"]) == (512, 512, 1, "MONOCHROME2")
    assert first["window"] == {"center": 40.0, "width": 400.0}
    assert first["spacing"] == {"row_mm": 0.810547, "col_mm": 0.810547, "source": "PixelSpacing"}
    assert first["position"] == pytest.approx(float(expected[0].ImagePositionPatient[2]))
    assert first["version"] == first["version"].lower() and len(first["version"]) == 16

    dx = series_instances(answer, 1)[0]
    assert dx["spacing"]["source"] == "ImagerPixelSpacing" and dx["spacing"]["row_mm"] == pytest.approx(1.2)
    assert dx["photometric"] == "MONOCHROME1" and dx["window"] == {"center": 128.0, "width": 256.0}

    assert body["patient"] == {"name": "JANCT000", "id": CT_PATIENT, "sex": "M", "birth_date": "",
                               "age": {"value": 60, "unit": "Y"}}
    assert body["study"]["site"]["code"] == "TS-DONGGUAN" and body["study"]["modalities"] == ["CT", "DX"]
    acquisition = {item["keyword"]: item["value"] for item in body["series"][0]["acquisition"]}
    assert acquisition["KVP"] == "120" and acquisition["SliceThickness"] == "1.250000"
    task = alliance.task(study_uid)
    assert body["task"]["id"] == task.id and body["task"]["priority"] == "ROUTINE"
    assert body["task"]["due_at"] == task.due_at.isoformat()

    with sessions() as session:
        viewed = session.scalars(select(AuditEvent).where(AuditEvent.object_id == study_uid,
                                                          AuditEvent.action == "study.viewed")).all()
    assert [event.actor for event in viewed] == ["reader-ct"]


def test_a_rendered_frame_has_the_asked_size_changes_with_the_window_and_is_cached_for_good(
    ct_study: tuple[str, list[Path]], browser: Callable[[str], Browser]
) -> None:
    study_uid, _ = ct_study
    reader = browser("reader-ct")
    first = series_instances(reader.get(f"/viewer/studies/{study_uid}"))[0]
    path = frame_path(first)

    preview = reader.get(path, v=first["version"], size="256", q="60")
    assert preview.mimetype == "image/jpeg" and Image.open(io.BytesIO(preview.data)).size == (256, 256)
    assert preview.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    etag = preview.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{64}"', etag)

    again = reader.client.get(path, query_string={"v": first["version"], "size": "256", "q": "60"},
                              headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["ETag"] == etag and not again.data
    assert "immutable" in again.headers["Cache-Control"]

    soft, lung = pixels(reader.get(path, size="256")), pixels(reader.get(path, size="256", wc="-600", ww="1500"))
    assert soft.shape == lung.shape == (256, 256)
    assert np.abs(soft - lung).mean() > 10  # the server windowed the pixels differently
    assert pixels(reader.get(path, size="256", invert="1")).mean() == pytest.approx(255 - soft.mean(), abs=2)
    lung_answer = reader.get(path, size="256", wc="-600", ww="1500")
    assert lung_answer.headers["ETag"] not in (etag, preview.headers["ETag"])
    assert lung_answer.headers["Cache-Control"] == "private, no-cache"  # no version in the URL: revalidate

    native = reader.get(frame_path(first, fmt="png"), v=first["version"])
    assert native.mimetype == "image/png" and Image.open(io.BytesIO(native.data)).size == (512, 512)
    replaced = reader.get(path, v="0123456789abcdef")
    assert_problem(replaced, 409)


def test_an_ellipse_roi_gives_the_hounsfield_figures_numpy_gives(
    ct_study: tuple[str, list[Path]], browser: Callable[[str], Browser]
) -> None:
    study_uid, paths = ct_study
    reader = browser("reader-ct")
    first = series_instances(reader.get(f"/viewer/studies/{study_uid}"))[0]
    cx, cy, rx, ry = 256.0, 300.5, 40.0, 25.5
    answer = reader.get(f"/viewer/instances/{first['sop_uid']}/frames/1/roi", cx=str(cx), cy=str(cy),
                        rx=str(rx), ry=str(ry))
    assert answer.status_code == 200, answer.get_data(as_text=True)

    ds = dcmread(paths[0])
    hounsfield = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    rows, columns = np.mgrid[0 : ds.Rows, 0 : ds.Columns] + 0.5  # pixel centres
    inside = ((columns - cx) / rx) ** 2 + ((rows - cy) / ry) ** 2 <= 1
    spacing = [float(value) for value in ds.PixelSpacing]
    assert answer.json["unit"] == "HU" and answer.json["pixels"] == int(inside.sum())
    assert answer.json["mean"] == pytest.approx(hounsfield[inside].mean(), abs=1e-3)
    assert answer.json["sd"] == pytest.approx(hounsfield[inside].std(), abs=1e-3)
    assert answer.json["minimum"] == hounsfield[inside].min() and answer.json["maximum"] == hounsfield[inside].max()
    assert answer.json["area_mm2"] == pytest.approx(inside.sum() * spacing[0] * spacing[1])
    assert answer.json["area_source"] == "PixelSpacing"


def test_bad_parameters_are_problems_naming_the_parameter(
    ct_study: tuple[str, list[Path]], browser: Callable[[str], Browser]
) -> None:
    study_uid, _ = ct_study
    reader = browser("reader-ct")
    first = series_instances(reader.get(f"/viewer/studies/{study_uid}"))[0]
    sop = first["sop_uid"]
    for query, parameter in (
        ({"size": "0"}, "size"), ({"size": "big"}, "size"), ({"q": "101"}, "q"), ({"wc": "40"}, "ww"),
        ({"wc": "40", "ww": "0"}, "ww"), ({"wc": "nan", "ww": "400"}, "wc"), ({"invert": "maybe"}, "invert"),
    ):
        assert_problem(reader.get(frame_path(first), **query), 400, parameter)
    assert_problem(reader.get(frame_path(first, frame=0)), 400, "frame")
    assert_problem(reader.get(frame_path(first, frame=2)), 400, "frame")
    assert_problem(reader.get(frame_path(first, fmt="gif")), 400, "format")
    roi = f"/viewer/instances/{sop}/frames/1/roi"
    assert_problem(reader.get(roi, cy="1", rx="1", ry="1"), 400, "cx")
    assert_problem(reader.get(roi, cx="1", cy="1", rx="-2", ry="1"), 400, "rx")
    assert_problem(reader.get(roi, cx="-900", cy="-900", rx="2", ry="2"), 422)  # no pixel of the image in it


def test_only_those_the_access_rules_let_see_the_study_open_it(
    alliance: Alliance, ct_study: tuple[str, list[Path]], browser: Callable[[str], Browser]
) -> None:
    study_uid, _ = ct_study
    first = series_instances(browser("dongguan").get(f"/viewer/studies/{study_uid}"))[0]  # the sending station
    for name in ("xihe", "reader-ecg"):  # another station; a reader without a visible task
        outsider = browser(name)
        body = assert_problem(outsider.get(f"/viewer/studies/{study_uid}"), 404)
        assert_problem(outsider.get(frame_path(first)), 404)
        assert_problem(outsider.get(f"/viewer/instances/{first['sop_uid']}/frames/1/roi", cx="1", cy="1", rx="1",
                                    ry="1"), 404)
        assert outsider.get(f"/studies/{study_uid}").status_code == 404
        unknown = assert_problem(outsider.get("/viewer/studies/1.2.3.4"), 404)
        assert body["detail"].replace(study_uid, "?") == unknown["detail"].replace("1.2.3.4", "?")

    anonymous = Browser(alliance, "10.0.2.1")
    assert_problem(anonymous.get(f"/viewer/studies/{study_uid}"), 401)
    assert anonymous.get(f"/studies/{study_uid}").headers["Location"].startswith("/login")


def with_resident_id(resident_id: str) -> dict[str, object]:
    """Attributes linking a patient to the national resident ID, the configured strong identifier."""
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID = resident_id, "CN-RESIDENT-ID"
    return {"OtherPatientIDsSequence": [other]}


def test_priors_are_the_same_persons_other_studies_the_caller_may_see(
    alliance: Alliance, node: Receiver, tmp_path: Path, browser: Callable[[str], Browser]
) -> None:
    def study(ae_title: str, **changes: object) -> str:
        """A station sends CT_small through the node (which links people by the configured strong identifier)."""
        path = copy_with_new_uids(CT, tmp_path, **changes)
        assert send(node.config.dicom.port, ae_title, path)[0].Status == 0
        return alliance.complete(dcmread(path, stop_before_pixels=True).StudyInstanceUID).study_uid

    person = with_resident_id("110101195001011234")
    current = study("DG_CT", StudyDate="20260301", **person)
    earlier = study("DG_CT", StudyDate="20250101")  # the same Patient ID at Dongguan
    elsewhere = study("XH_DR", Modality="DX", PatientID="XH-77", StudyDate="20240505", **person)
    study("DG_CT", PatientID="someone-else")

    def priors(name: str) -> list[str]:
        answer = browser(name).get(f"/viewer/studies/{current}")
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return [prior["study_uid"] for prior in answer.json["priors"]]

    assert priors("reader-ct") == [earlier, elsewhere]  # newest first, across sites through the resident ID
    assert priors("dongguan") == [earlier]  # Xihe's study is not Dongguan's to see
    prior = browser("supervisor").get(f"/viewer/studies/{current}").json["priors"][1]
    assert prior["site"]["code"] == "TS-XIHE" and prior["date"] == "2024-05-05" and prior["viewer"] == "image"


def test_a_stored_image_whose_pixels_cannot_be_decoded_is_listed_but_its_pixels_are_a_422(
    alliance: Alliance, data: Path, tmp_path: Path, browser: Callable[[str], Browser]
) -> None:
    # A real JPEG 2000 CT whose compressed frame is garbled after the archive's checks (which read no pixels).
    ds = dcmread(data / "compressed" / "cs3d_CT2_J2KR_NEMA.dcm")
    fragment_start = ds.PixelData.index(b"\xff\x4f\xff\x51")  # the J2K codestream's SOC and SIZ markers
    ds.PixelData = ds.PixelData[:fragment_start] + bytes(64) + ds.PixelData[fragment_start + 64 :]
    garbled = tmp_path / "garbled.dcm"
    ds.save_as(garbled)
    study_uid = alliance.study(garbled, "DG_CT").study_uid
    station = browser("dongguan")
    instance = series_instances(station.get(f"/viewer/studies/{study_uid}"))[0]
    body = assert_problem(station.get(frame_path(instance)), 422)
    assert "cannot be decoded" in body["detail"] and "JPEG 2000" in body["detail"]


def test_the_ecg_has_twelve_leads_the_device_measurements_and_telerads_once_measured(
    alliance: Alliance, config: Config, sessions: sessionmaker, browser: Callable[[str], Browser]
) -> None:
    study_uid = alliance.study(ECG, "XH_ECG").study_uid
    reader = browser("reader-ecg")
    study = reader.get(f"/viewer/studies/{study_uid}").json
    assert study["viewer"] == "ecg"
    waveform = study["series"][0]["instances"][0]
    assert waveform["kind"] == "waveform" and "rows" not in waveform
    page = reader.get(f"/studies/{study_uid}")
    assert page.status_code == 200 and 'id="ecg-svg"' in page.get_data(as_text=True)

    url = f"/viewer/instances/{waveform['sop_uid']}/ecg"
    ecg = reader.get(url).json
    assert ecg["lead_order"] == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert ecg["sampling_frequency"] == 500 and ecg["duration_s"] == 10
    assert {len(samples) for samples in ecg["samples"].values()} == {5000}
    device = dcmread(ECG).WaveformAnnotationSequence
    assert ecg["device"]["values"] and len(ecg["device"]["texts"]) <= len(device)
    assert ecg["computed_status"] == "computing" and ecg["computed"] is None

    jobs.configure(config, sessions)
    jobs.on_study(0, "study.complete", {"study_uid": study_uid})
    measured = reader.get(url, samples="0").json
    assert "samples" not in measured and measured["computed_status"] == "done"
    assert measured["computed"]["source"] == "telerad" and 40 < measured["computed"]["heart_rate"] < 120
    assert_problem(reader.get(url, samples="some"), 400, "samples")
    assert_problem(reader.get(frame_path(waveform)), 422)  # a waveform has no pixels to render


def test_the_viewer_page_speaks_chinese_unless_asked_for_english(
    ct_study: tuple[str, list[Path]], browser: Callable[[str], Browser]
) -> None:
    study_uid, _ = ct_study
    reader = browser("reader-ct")
    page = reader.get(f"/studies/{study_uid}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and '<html lang="zh-CN"' in html
    for element in ('id="viewport"', 'id="slice-slider"', 'id="slice-label"', 'data-preset="lung"', 'id="tool-wl"',
                    'id="tool-length"', 'id="tool-angle"', 'id="tool-ellipse"', 'id="tool-pan"', 'id="invert"',
                    'id="fit"', 'id="reset"', 'id="measurements"'):
        assert element in html
    words = text_of(page)
    for shown in ("窗宽窗位", "长度", "肺窗", "骨窗", "反相", "适应窗口", "播放", "既往检查", "键盘与鼠标"):
        assert shown in words
    assert "Window/level" not in words
    scripts_messages = json.loads(re.search(r'<script type="application/json" id="i18n">(.*?)</script>', html).group(1))
    assert scripts_messages["Open side by side"] == "并排打开"

    english = text_of(reader.get(f"/studies/{study_uid}", lang="en"))
    assert "Window/level" in english and "Prior studies" in english and "窗宽窗位" not in english
