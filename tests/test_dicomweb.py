"""DICOMweb under /dicomweb, spoken to by the real dicomweb-client (and by raw requests where OHIF differs):
QIDO-RS search and paging, WADO-RS instances byte for byte, metadata and bulk data, frames as stored and
native, rendered images through an injected renderer, STOW-RS through the archive like C-STORE — and who
may see and store what."""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import requests
from dicomweb_client import DICOMwebClient
from PIL import Image as PILImage
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.pixels import pixel_array
from pydicom.uid import generate_uid
from sqlalchemy import event, func, select
from sqlalchemy.orm import sessionmaker
from werkzeug.serving import make_server

from conftest import START, free_port, shared_data
from dicom_files import copy_with_new_uids
from pacs_node.archive import Archive
from pacs_node.dicomweb.resources import EXTENSION
from pacs_node.index import Instance, Study, complete_stable_studies
from pacs_node.node import load_senders, storage_for
from telerad.audit import AuditEvent
from telerad.config import Config
from telerad.events import OutboxEvent
from telerad.users import create_token
from telerad.web import create_app

CT = Path(get_testdata_file("CT_small.dcm"))
ECG = Path(get_testdata_file("waveform_ecg.dcm"))
PROBLEM = "application/problem+json"
OCTET = 'multipart/related; type="application/octet-stream"'


class Web:
    """The web application served on a real port, with the demo alliance's stations sending studies."""

    def __init__(self, config: Config, sessions: sessionmaker, folder: Path) -> None:
        self.sessions, self.folder = sessions, folder
        self.archive = Archive(storage_for(config), sessions)
        self.senders = load_senders(sessions)
        self.app = create_app(config)
        self.server = make_server("127.0.0.1", free_port(), self.app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/dicomweb"
        self.tokens: dict[str, str] = {}

    def study(self, source: Path, ae_title: str, count: int = 1, **changes: object) -> tuple[str, list[Path]]:
        """A station sends ``count`` instances of one new study and series made from ``source``."""
        study, series = generate_uid(), generate_uid()
        paths = [
            copy_with_new_uids(source, self.folder, StudyInstanceUID=study, SeriesInstanceUID=series,
                               InstanceNumber=number, **changes)
            for number in range(1, count + 1)
        ]
        for path in paths:
            self.archive.receive(path.read_bytes(), self.senders[ae_title])
        return study, paths

    def headers(self, who: str) -> dict[str, str]:
        if who not in self.tokens:
            with self.sessions() as session, session.begin():
                self.tokens[who] = create_token(session, who)
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def client(self, who: str) -> DICOMwebClient:
        session = requests.Session()
        session.headers.update(self.headers(who))
        return DICOMwebClient(url=self.url, session=session)

    def get(self, path: str, who: str | None, accept: str | None = None, **params: Any) -> requests.Response:
        headers = self.headers(who) if who else {}
        if accept:
            headers["Accept"] = accept
        return requests.get(f"{self.url}{path}", headers=headers, params=params, timeout=20)

    def post(self, path: str, who: str | None, body: bytes, content_type: str) -> requests.Response:
        headers = {**(self.headers(who) if who else {}), "Content-Type": content_type}
        return requests.post(f"{self.url}{path}", headers=headers, data=body, timeout=20)

    def count(self, model: type) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(model))

    def audit(self, action: str) -> list[AuditEvent]:
        with self.sessions() as session:
            return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all())


@pytest.fixture
def web(config: Config, sessions: sessionmaker, tmp_path: Path, at: list) -> Iterator[Web]:
    served = Web(config, sessions, tmp_path / "files")
    yield served
    served.server.shutdown()


def uids(results: list[dict[str, Any]], tag: str = "0020000D") -> list[str]:
    return [result[tag]["Value"][0] for result in results]


def statements(web: Web, action: Callable[[], object]) -> int:
    """How many SQL statements the web application runs while ``action`` calls it."""
    engine = web.app.extensions["telerad.sessions"].kw["bind"]
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def served(web: Web, uri: str) -> str:
    """A URI the server gave, on the test server's port (dicomweb-client sends a Host header without it)."""
    return web.url + uri.split("/dicomweb", 1)[1]


def parts(response: requests.Response, header: str = "Content-Type") -> list[tuple[str, bytes]]:
    """The (value of ``header``, content) of each part of a multipart/related response."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("multipart/related")
    boundary = re.search(r'boundary="?([^";]+)', response.headers["Content-Type"]).group(1).encode()
    pieces = response.content.split(b"--" + boundary)
    assert pieces[0] == b"" and pieces[-1] == b"--\r\n"
    found = []
    for piece in pieces[1:-1]:
        head, _, content = piece.removeprefix(b"\r\n").removesuffix(b"\r\n").partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        found.append((fields[header], content))
    return found


def multipart(*contents: bytes, boundary: str = "b0undary") -> tuple[bytes, str]:
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + c + b"\r\n" for c in contents)
    return body + f"--{boundary}--\r\n".encode(), f'multipart/related; type="application/dicom"; boundary={boundary}'


def assert_problem(response: requests.Response, status: int, parameter: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["detail"]
    if parameter is not None:
        assert body["parameter"] == parameter and parameter in body["detail"]
    return body


def test_search_matches_pages_and_shows_each_station_only_its_own(web: Web) -> None:
    data = shared_data()
    wang, wang_files = web.study(CT, "DG_CT", 3, PatientName="Wang^XiaoDong=王^小东", PatientID="DG-1",
                                 SpecificCharacterSet="ISO_IR 192", StudyDate="20260301", AccessionNumber="A100")
    li, _ = web.study(CT, "DG_CT", PatientName="Li^Lei", PatientID="DG-2", StudyDate="20251231")
    zhao, _ = web.study(data / "xray/dx_image_highdicom_Fujifilm.dcm", "XH_DR", PatientName="Zhao^Min")
    dongguan = web.client("dongguan")

    assert uids(dongguan.search_for_studies()) == [wang, li]  # newest first; not Xihe's study
    assert uids(web.client("xihe").search_for_studies()) == [zhao]
    assert set(uids(web.client("supervisor").search_for_studies())) == {wang, li, zhao}

    [found] = dongguan.search_for_studies(search_filters={"PatientName": "wang*"})
    assert found["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小东"}]}
    assert found["00080061"] == {"vr": "CS", "Value": ["CT"]}
    assert found["00201208"]["Value"] == [3] and found["00201206"]["Value"] == [1]
    assert found["00080050"]["Value"] == ["A100"] and found["00080056"]["Value"] == ["ONLINE"]
    assert found["00081190"]["Value"][0].endswith(f"/dicomweb/studies/{wang}")  # the client's Host lacks the port
    assert uids(dongguan.search_for_studies(search_filters={"PatientName": "王*"})) == [wang]
    assert uids(dongguan.search_for_studies(search_filters={"StudyDate": "20260101-20261231"})) == [wang]
    assert uids(dongguan.search_for_studies(search_filters={"StudyDate": "-20251231"})) == [li]
    assert uids(dongguan.search_for_studies(search_filters={"00100020": "DG-2"})) == [li]
    assert uids(dongguan.search_for_studies(search_filters={"StudyInstanceUID": f"{li},{wang}"})) == [wang, li]
    assert uids(dongguan.search_for_studies(search_filters={"ModalitiesInStudy": "DX,CT"})) == [wang, li]
    assert uids(dongguan.search_for_studies(search_filters={"Modality": "CT"})) == [wang, li]  # relational
    assert dongguan.search_for_studies(search_filters={"AccessionNumber": "none"}) == []
    assert dongguan.search_for_studies(search_filters={"StudyInstanceUID": zhao}) == []

    assert uids(dongguan.search_for_studies(limit=1)) == [wang]
    assert uids(dongguan.search_for_studies(limit=1, offset=1)) == [li]
    assert uids(dongguan.search_for_studies(limit=1, get_remaining=True)) == [wang, li]

    [more] = dongguan.search_for_studies(search_filters={"PatientID": "DG-1"}, fields=["Manufacturer", "00181150"])
    source = dcmread(wang_files[0])
    assert more["00080070"] == {"vr": "LO", "Value": [source.Manufacturer]}  # read from a stored file
    assert more["00181150"] == {"vr": "IS", "Value": [source.ExposureTime]}
    [everything] = dongguan.search_for_studies(search_filters={"PatientID": "DG-1"}, fields=["all"])
    assert everything["00100021"]["Value"] == ["site:TS-DONGGUAN"]  # the issuer the archive assigned

    [series] = dongguan.search_for_series(wang)
    assert series["00080060"]["Value"] == ["CT"] and series["00201209"]["Value"] == [3]
    assert "00100020" not in series  # the study is given by the path
    series_uid = series["0020000E"]["Value"][0]
    [dx_series] = web.client("supervisor").search_for_series(search_filters={"Modality": "DX"})
    assert dx_series["0020000D"]["Value"] == [zhao]  # all series: the study's attributes too
    assert dx_series["00100010"]["Value"] == [{"Alphabetic": "Zhao^Min"}]
    assert web.client("xihe").search_for_series(wang) == []

    instances = dongguan.search_for_instances(wang, series_uid)
    assert uids(instances, "00080018") == [dcmread(path).SOPInstanceUID for path in wang_files]
    assert [i["00200013"]["Value"] for i in instances] == [[1], [2], [3]]
    assert instances[0]["00280010"]["Value"] == [128] and instances[0]["00280100"]["Value"] == [16]
    assert instances[0]["00280008"] == {"vr": "IS"}  # single frame: asked for, not there
    sop = instances[1]["00080018"]["Value"][0]
    assert instances[1]["00081190"]["Value"][0].endswith(f"/studies/{wang}/series/{series_uid}/instances/{sop}")
    [alone] = dongguan.search_for_instances(search_filters={"SOPInstanceUID": sop})
    assert alone["00100010"]["Value"][0]["Alphabetic"] == "Wang^XiaoDong"  # all instances: study attributes too
    assert uids(dongguan.search_for_instances(wang, limit=2, offset=1), "00080018") == uids(instances, "00080018")[1:]

    one = statements(web, lambda: dongguan.search_for_studies(limit=1, fields=["Manufacturer"]))
    assert statements(web, lambda: dongguan.search_for_studies(fields=["Manufacturer"])) == one  # no query per result


def test_search_parameters_are_checked_or_warned_about(web: Web) -> None:
    study, _ = web.study(CT, "DG_CT")
    for name, value in (("limit", "0"), ("offset", "-1"), ("StudyDate", "2026-03-01"), ("NoSuchKey", "1"),
                        ("includefield", "Nonsense"), ("SeriesNumber", "one"), ("StudyInstanceUID", "1.2.x"),
                        ("fuzzymatching", "maybe"), ("0009ABCD", "1")):
        assert_problem(web.get("/studies", "dongguan", **{name: value}), 400, name)
    response = web.get("/studies", "dongguan", PatientAge="050Y", fuzzymatching="true")
    assert response.status_code == 200 and uids(response.json()) == [study]
    warnings = response.headers["Warning"]
    assert "299" in warnings and "PatientAge" in warnings and "fuzzymatching" in warnings
    response = web.get("/studies", "dongguan", accept="application/dicom+xml")
    assert "application/dicom+json" in assert_problem(response, 406)["supported"]
    assert web.get("/studies", "dongguan", PatientID="nobody").status_code == 204


def test_retrieve_gives_the_stored_files_byte_for_byte_and_is_audited(web: Web) -> None:
    data = shared_data()
    study, files = web.study(CT, "DG_CT", 2)
    compressed, [j2k] = web.study(data / "compressed/cs3d_CT2_J2KR_NEMA.dcm", "DG_CT")
    client = web.client("dongguan")

    retrieved = client.retrieve_study(study)
    assert [ds.SOPInstanceUID for ds in retrieved] == [dcmread(path).SOPInstanceUID for path in files]
    response = web.get(f"/studies/{study}", "dongguan", accept='multipart/related; type="application/dicom"')
    assert [content for _, content in parts(response)] == [path.read_bytes() for path in files]
    assert parts(response, "Content-Location")[1][0].endswith(f"/instances/{dcmread(files[1]).SOPInstanceUID}")
    assert parts(response)[0][0] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"

    source = dcmread(j2k)
    series, sop = source.SeriesInstanceUID, source.SOPInstanceUID
    assert client.retrieve_instance(compressed, series, sop).SOPInstanceUID == sop
    response = web.get(f"/studies/{compressed}/series/{series}/instances/{sop}", "dongguan",
                       accept='multipart/related; type="application/dicom"; transfer-syntax=*')
    assert parts(response) == [("application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90", j2k.read_bytes())]
    explicit = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'
    [(part_type, content)] = parts(web.get(f"/studies/{compressed}", "dongguan", accept=explicit))
    decoded = dcmread(BytesIO(content))
    assert part_type.endswith("1.2.840.10008.1.2.1") and decoded.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert (decoded.pixel_array == source.pixel_array).all()
    jpeg_ls = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.80'
    assert_problem(web.get(f"/studies/{study}", "dongguan", accept=jpeg_ls), 406)

    retrievals = web.audit("study.retrieved")
    assert {(event.actor, event.object_id) for event in retrievals} == {("dongguan", study), ("dongguan", compressed)}
    assert any(event.detail["level"] == "instance" and event.detail["instances"] == 1 for event in retrievals)


def test_metadata_and_bulk_data(web: Web) -> None:
    study, [path] = web.study(CT, "DG_CT")
    ecg_study, [ecg_path] = web.study(ECG, "DG_CT")
    client = web.client("dongguan")
    source = dcmread(path)

    metadata = client.retrieve_instance_metadata(study, source.SeriesInstanceUID, source.SOPInstanceUID)
    assert metadata["00100010"]["Value"] == [{"Alphabetic": str(source.PatientName)}]
    assert metadata["00083002"]["Value"] == ["1.2.840.10008.1.2.1"]
    pixel_uri = metadata["7FE00010"]["BulkDataURI"]
    assert metadata["7FE00010"]["vr"] == "OW" and pixel_uri.endswith("/bulk/7FE00010")
    assert client.retrieve_bulkdata(served(web, pixel_uri)) == [source.PixelData]  # Pixel Data: its frames
    assert len(client.retrieve_study_metadata(study)) == 1
    assert web.audit("study.viewed")[0].object_id == study

    ecg = dcmread(ecg_path)
    [ecg_metadata] = client.retrieve_series_metadata(ecg_study, ecg.SeriesInstanceUID)
    waveform = ecg_metadata["54000100"]["Value"][0]["54001010"]
    assert waveform["BulkDataURI"].endswith("/bulk/54000100/0/54001010")
    assert client.retrieve_bulkdata(served(web, waveform["BulkDataURI"])) == [ecg.WaveformSequence[0].WaveformData]
    instance = f"/studies/{ecg_study}/series/{ecg.SeriesInstanceUID}/instances/{ecg.SOPInstanceUID}"
    assert_problem(web.get(f"{instance}/bulk/54000100/7/54001010", "dongguan"), 404)
    assert_problem(web.get(f"{instance}/frames/1", "dongguan"), 404)  # an ECG has no frames


def test_frames_native_and_as_stored(web: Web) -> None:
    data = shared_data()
    study, [path] = web.study(CT, "DG_CT")
    source = dcmread(path)
    client = web.client("dongguan")
    ct = (study, source.SeriesInstanceUID, source.SOPInstanceUID)
    assert client.retrieve_instance_frames(*ct, [1]) == [source.PixelData]
    assert client.retrieve_instance_frames(*ct, [1], media_types=("application/octet-stream",)) == [source.PixelData]
    frame_url = f"/studies/{ct[0]}/series/{ct[1]}/instances/{ct[2]}/frames"
    assert_problem(web.get(f"{frame_url}/2", "dongguan"), 404)
    assert_problem(web.get(f"{frame_url}/0", "dongguan"), 400)
    assert "application/octet-stream" in str(assert_problem(
        web.get(f"{frame_url}/1", "dongguan", accept='multipart/related; type="image/jpeg"'), 406)["supported"])

    original = data / "compressed/dicomParser_multiframe/CT0012.fragmented_no_bot_jpeg_ls.80.dcm"
    multi, [path] = web.study(original, "DG_CT")
    source = dcmread(path)
    frame_url = f"/studies/{multi}/series/{source.SeriesInstanceUID}/instances/{source.SOPInstanceUID}/frames"
    stored = list(generate_frames(source.PixelData, number_of_frames=2))
    ohif = "multipart/related; type=application/octet-stream; transfer-syntax=*"
    response = web.get(f"{frame_url}/2,1", "dongguan", accept=ohif)
    assert [location for location, _ in parts(response, "Content-Location")] == [
        f"{web.url}{frame_url}/2", f"{web.url}{frame_url}/1"]  # requests sends the port in Host
    as_stored = parts(response)
    assert as_stored == [(f"application/octet-stream; transfer-syntax={source.file_meta.TransferSyntaxUID}", frame)
                         for frame in (stored[1], stored[0])]
    frames = client.retrieve_instance_frames(multi, source.SeriesInstanceUID, source.SOPInstanceUID, [1, 2])
    assert frames == stored  # dicomweb-client's default, type="*/*": as stored
    native = parts(web.get(f"{frame_url}/2", "dongguan", accept=OCTET))
    assert native == [("application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1",
                       pixel_array(path, index=1).astype("<u2").tobytes())]
    assert parts(web.get(f"{frame_url}/1", "dongguan", accept='multipart/related; type="image/jls"'))[0] == (
        f"image/jls; transfer-syntax={source.file_meta.TransferSyntaxUID}", stored[0])

    j2k_study, [j2k] = web.study(data / "compressed/cs3d_CT2_J2KR_NEMA.dcm", "DG_CT")
    source = dcmread(j2k)
    url = f"/studies/{j2k_study}/series/{source.SeriesInstanceUID}/instances/{source.SOPInstanceUID}/frames/1"
    [(part_type, frame)] = parts(web.get(url, "dongguan", accept=ohif))
    assert part_type.endswith("1.2.840.10008.1.2.4.90")
    assert frame == next(generate_frames(source.PixelData, number_of_frames=1))

    retired, [path] = web.study(data / "compressed/cs3d_CTImage_ts/CT_jpeg_spectral_53_retired.dcm", "DG_CT")
    source = dcmread(path)
    url = f"/studies/{retired}/series/{source.SeriesInstanceUID}/instances/{source.SOPInstanceUID}/frames/1"
    problem = assert_problem(web.get(url, "dongguan", accept=OCTET), 406)  # no decoder for this process
    assert "cannot be decoded" in problem["detail"] and any("transfer-syntax=*" in s for s in problem["supported"])
    assert parts(web.get(url, "dongguan", accept=ohif))[0][1] == next(generate_frames(source.PixelData,
                                                                                       number_of_frames=1))


def test_rendered_and_thumbnails_go_through_the_injected_renderer(web: Web) -> None:
    study, [path] = web.study(CT, "DG_CT")
    source = dcmread(path)
    instance = f"/studies/{study}/series/{source.SeriesInstanceUID}/instances/{source.SOPInstanceUID}"
    response = web.get(f"{instance}/rendered", "dongguan")  # the viewer's renderer, as create_app wires it
    assert response.headers["Content-Type"] == "image/jpeg" and response.content[:2] == b"\xff\xd8"
    response = web.get(f"{instance}/frames/1/rendered", "dongguan", accept="image/png", viewport="64,32")
    assert response.headers["Content-Type"] == "image/png" and PILImage.open(BytesIO(response.content)).size == (32, 32)
    assert web.get(f"/studies/{study}/thumbnail", "dongguan").content[:2] == b"\xff\xd8"
    ecg_study, [ecg] = web.study(ECG, "DG_CT")
    ecg_series = dcmread(ecg).SeriesInstanceUID
    assert_problem(web.get(f"/studies/{ecg_study}/series/{ecg_series}/thumbnail", "dongguan"), 422)

    calls: list[tuple[Any, ...]] = []

    def render(path: Path, frame_index: int, *, window: Any, size: Any, fmt: str, quality: int) -> bytes:
        calls.append((path.read_bytes() == source_bytes, frame_index, window, size, fmt, quality))
        return b"image:" + fmt.encode()

    source_bytes = path.read_bytes()
    backend = web.app.extensions[EXTENSION]
    web.app.extensions[EXTENSION] = dataclasses.replace(backend, render=render)
    response = web.get(f"{instance}/frames/1/rendered", "dongguan", accept="image/webp, image/png",
                       window="40,400,linear", viewport="64,64", quality="70")
    assert response.headers["Content-Type"] == "image/webp" and response.content == b"image:webp"
    assert calls[-1] == (True, 0, (40.0, 400.0), 64, "webp", 70)
    assert web.get(f"{instance}/rendered", "dongguan").content == b"image:jpeg"
    assert calls[-1] == (True, 0, None, None, "jpeg", 85)
    assert web.get(f"/studies/{study}/thumbnail", "dongguan", accept="image/*").content == b"image:jpeg"
    assert calls[-1] == (True, 0, None, 128, "jpeg", 85)

    assert "image/jpeg" in assert_problem(web.get(f"{instance}/rendered", "dongguan", accept="image/gif"),
                                          406)["supported"]
    for name, value in (("window", "40"), ("window", "40,400,sigmoid"), ("viewport", "10,10,0,0,5,5"),
                        ("quality", "101"), ("frames", "1")):
        assert_problem(web.get(f"{instance}/rendered", "dongguan", **{name: value}), 400, name)
    assert web.get(f"{instance}/rendered", "dongguan", annotation="patient", iccprofile="no").status_code == 200
    assert_problem(web.get(f"{instance}/frames/2/rendered", "dongguan"), 404)
    web.app.extensions[EXTENSION] = dataclasses.replace(backend, render=None)
    assert_problem(web.get(f"{instance}/rendered", "dongguan"), 501)


def test_store_instances_is_received_like_a_c_store(web: Web, at: list) -> None:
    path = copy_with_new_uids(CT, web.folder)
    ds = dcmread(path)
    answer = web.client("dongguan").store_instances([ds])
    [referenced] = answer.ReferencedSOPSequence
    assert referenced.ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert referenced.RetrieveURL.endswith(f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                                           f"/instances/{ds.SOPInstanceUID}")
    assert answer.RetrieveURL.endswith(f"/studies/{ds.StudyInstanceUID}") and "FailedSOPSequence" not in answer
    with web.sessions() as session:
        study = session.scalar(select(Study).where(Study.study_uid == ds.StudyInstanceUID))
        assert study.calling_ae == "WEB:dongguan" and study.num_instances == 1
    assert web.audit("study.stored")[0].detail == {"via": "dicomweb", "stored": 1, "refused": 0}
    stored = web.client("dongguan").retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert stored.PatientName == ds.PatientName

    at[0] = START + timedelta(seconds=61)
    with web.sessions() as session, session.begin():
        assert complete_stable_studies(session, 60) == [ds.StudyInstanceUID]
    with web.sessions() as session:
        topics = session.scalars(select(OutboxEvent.topic).where(OutboxEvent.key == ds.StudyInstanceUID)).all()
    assert topics == ["study.complete"]

    series = sorted((shared_data() / "ct/series_JANCT000_3slice").glob("*.dcm"))  # 1.6 MB: sent chunked
    answer = web.client("xihe").store_instances([dcmread(path) for path in series])
    assert len(answer.ReferencedSOPSequence) == 3 and answer.RetrieveURL.endswith(dcmread(series[0]).StudyInstanceUID)

    other = copy_with_new_uids(CT, web.folder)
    body, content_type = multipart(other.read_bytes(), copy_with_new_uids(CT, web.folder).read_bytes())
    response = web.post(f"/studies/{ds.StudyInstanceUID}", "dongguan", body, content_type)
    assert response.status_code == 409 and response.headers["Content-Type"] == "application/dicom+json"
    failed = response.json()["00081198"]["Value"]
    assert [item["00081197"]["Value"] for item in failed] == [[0xA900], [0xA900]]
    assert failed[0]["00081155"]["Value"] == [dcmread(other).SOPInstanceUID]
    assert_problem(web.post("/studies", "reader-ct", body, content_type), 403)
    assert_problem(web.post("/studies", "xihe", body, 'multipart/related; type="application/dicom+json"; boundary=x'),
                   415)
    assert web.count(Instance) == 4


def test_broken_input_is_refused_precisely_and_leaves_nothing(web: Web) -> None:
    data = shared_data()
    good = copy_with_new_uids(CT, web.folder).read_bytes()
    without_meta = (data / "edge/pydicom_no_meta.dcm").read_bytes()
    body, content_type = multipart(without_meta, b"\x00not dicom at all" * 40)
    response = web.post("/studies", "dongguan", body, content_type)
    assert response.status_code == 409
    failed = response.json()["00081198"]["Value"]
    assert [item["00081197"]["Value"] for item in failed] == [[0xC000], [0xC000]]
    assert failed[0]["00000902"]["Value"][0].startswith("cannot parse dataset: File is missing DICOM File Meta")
    assert failed[0]["00081155"] == {"vr": "UI"}  # no UID to name
    assert web.count(Instance) == 0 and len(web.audit("instance.refused")) == 2

    body, content_type = multipart(good, b"junk")
    response = web.post("/studies", "dongguan", body, content_type)
    assert response.status_code == 202
    assert len(response.json()["00081199"]["Value"]) == len(response.json()["00081198"]["Value"]) == 1
    assert web.count(Instance) == 1

    body, content_type = multipart(copy_with_new_uids(CT, web.folder).read_bytes())
    wrong_boundary = body.replace(b"b0undary", b"other")
    for broken, reason in ((body[:-40], "truncated"), (wrong_boundary, "boundary"), (b"", "empty")):
        assert reason in assert_problem(web.post("/studies", "dongguan", broken, content_type), 400)["detail"]
    assert_problem(web.post("/studies", "dongguan", body, "multipart/related; type=\"application/dicom\""), 400)
    assert web.count(Instance) == 1


def test_only_the_callers_studies_and_only_when_signed_in(web: Web) -> None:
    study, [path] = web.study(CT, "DG_CT")
    source = dcmread(path)
    instance = f"/studies/{study}/series/{source.SeriesInstanceUID}/instances/{source.SOPInstanceUID}"
    for resource in ("/studies", f"/studies/{study}", f"{instance}/metadata", f"{instance}/frames/1"):
        response = web.get(resource, None)
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert web.get(resource, "dongguan").status_code == 200
        if resource != "/studies":
            assert_problem(web.get(resource, "xihe"), 404)
            assert_problem(web.get(resource, "reader-ct"), 404)  # no task yet
    body, content_type = multipart(path.read_bytes())
    assert_problem(web.post("/studies", None, body, content_type), 401)
    with pytest.raises(requests.HTTPError):
        web.client("xihe").retrieve_study(study)

    assert_problem(web.get("/no-such-resource", "dongguan"), 404)
    assert_problem(requests.delete(f"{web.url}/studies/{study}", timeout=20), 405)
    root = web.url.removesuffix("/dicomweb")
    assert requests.get(f"{root}/api/v1/no-such-thing", timeout=20).headers["Content-Type"] == PROBLEM
    assert requests.get(f"{root}/no-such-page", timeout=20).headers["Content-Type"].startswith("text/html")
