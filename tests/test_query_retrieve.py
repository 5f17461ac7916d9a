"""Query/Retrieve against a running node with real clients: dcmtk findscu, movescu and storescp, pynetdicom.

Instances are stored with their data sets sent as they are in the files, so
what comes back is compared byte for byte with the original files.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config, build_role, evt
from pynetdicom.dsutils import split_dataset
from pynetdicom.events import Event
from pynetdicom.sop_class import (
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from conftest import free_port, tool, wait_for
from pacs_node.node import Receiver
from telerad.sites import Site

pytestmark = pytest.mark.dcmtk

CT_STUDY = "1.2.392.200103.20080913.113635.0.2009.6.22.21.43.10.22941.1"  # DG_CT's, Implicit VR, group lengths
LIJIA_STUDY = "1.3.6.1.4.1.5962.1.2.0.1175775771.5714.0"  # LIJIA_ECG's chrX2.dcm: GB18030 name
ZZ_STUDY = "1.3.6.1.4.1.5962.1.2.0.1175775771.5711.0"  # ZZ_DR's chrX1.dcm: ISO_IR 192 name
COMPRESSED = [
    "compressed/pydicom_data_JPEG-LL.dcm",  # JPEG Lossless SV1
    "compressed/pydicom_SC_rgb_rle_2frame.dcm",  # RLE Lossless
    "compressed/dicognito_CT_small_deflated.dcm",  # Deflated Explicit VR Little Endian
    "compressed/pydicom_MR_small_bigendian.dcm",  # Explicit VR Big Endian
]


def body(path: Path) -> bytes:
    """The encoded data set of a DICOM file: everything after the File Meta Information."""
    return path.read_bytes()[split_dataset(path)[1] :]


def ct_files(data: Path) -> list[Path]:
    return sorted((data / "ct/series_JANCT000_3slice").glob("*.dcm"))


def store(node: Receiver, calling_ae: str, files: list[Path]) -> None:
    """Send ``files`` to the node from ``calling_ae`` (their data sets as they are, see ``stored``)."""
    ae = AE(ae_title=calling_ae)
    metas = [read_file_meta_info(path) for path in files]
    for sop_class, syntax in sorted({(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID) for meta in metas}):
        ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate("127.0.0.1", node.config.dicom.port, ae_title="TELERAD")
    assert assoc.is_established
    try:
        for path in files:
            assert assoc.send_c_store(path).Status == 0x0000, path
    finally:
        assoc.release()


@pytest.fixture
def stored(node: Receiver, data: Path, monkeypatch: pytest.MonkeyPatch) -> Receiver:
    """The node holding a CT study of DG_CT and a Chinese-named study each of LIJIA_ECG and ZZ_DR."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # send files without re-encoding
    store(node, "DG_CT", ct_files(data))
    store(node, "LIJIA_ECG", [data / "edge/charset/chrX2.dcm"])
    store(node, "ZZ_DR", [data / "edge/charset/chrX1.dcm"])
    return node


def findscu(node: Receiver, tmp_path: Path, calling_ae: str, *keys: str, model: str = "-S") -> list[Dataset]:
    """The responses to a dcmtk findscu query, read back from the files it extracts them to."""
    out = tmp_path / f"find-{uuid.uuid4().hex[:8]}"
    out.mkdir()
    command = [tool("findscu"), model, "-aet", calling_ae, "-aec", "TELERAD", "-X", "-od", str(out)]
    command += ["127.0.0.1", str(node.config.dicom.port), *(arg for key in keys for arg in ("-k", key))]
    run = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return [dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]


def study_uids(node: Receiver, tmp_path: Path, calling_ae: str, *keys: str) -> set[str]:
    found = findscu(node, tmp_path, calling_ae, "QueryRetrieveLevel=STUDY", "StudyInstanceUID", *keys)
    return {ds.StudyInstanceUID for ds in found}


def test_find_returns_what_was_stored_at_each_level_to_whoever_may_see_it(
    stored: Receiver, tmp_path: Path, data: Path
) -> None:
    originals = [dcmread(path, stop_before_pixels=True) for path in ct_files(data)]
    series_uid = originals[0].SeriesInstanceUID
    [study] = findscu(
        stored, tmp_path, "DG_CT", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={CT_STUDY}", "PatientID",
        "PatientName", "StudyDate", "StudyTime", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    )
    assert study.SpecificCharacterSet == "ISO_IR 192"
    assert (study.PatientID, study.PatientName, study.StudyDate, study.StudyTime, study.ModalitiesInStudy) == (
        "99000", "JANCT000", "20030417", "104607", "CT"
    )
    assert (study.NumberOfStudyRelatedSeries, study.NumberOfStudyRelatedInstances) == (1, 3)

    [series] = findscu(
        stored, tmp_path, "DG_CT", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={CT_STUDY}",
        "SeriesInstanceUID", "Modality", "NumberOfSeriesRelatedInstances",
    )
    assert (series.StudyInstanceUID, series.SeriesInstanceUID, series.Modality) == (CT_STUDY, series_uid, "CT")
    assert series.NumberOfSeriesRelatedInstances == 3

    images = findscu(
        stored, tmp_path, "DG_CT", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={CT_STUDY}",
        f"SeriesInstanceUID={series_uid}", "SOPInstanceUID", "SOPClassUID", "InstanceNumber",
    )
    assert sorted((i.SOPInstanceUID, i.SOPClassUID, i.InstanceNumber) for i in images) == sorted(
        (o.SOPInstanceUID, o.SOPClassUID, o.InstanceNumber) for o in originals
    )

    patients = findscu(stored, tmp_path, "DG_CT", "QueryRetrieveLevel=PATIENT", "PatientID=99000", "PatientName",
                       model="-P")
    assert [(p.PatientID, p.PatientName) for p in patients] == [("99000", "JANCT000")]

    # A village sees its own studies, a township also its villages', the county those of all its townships.
    assert study_uids(stored, tmp_path, "LIJIA_ECG") == {LIJIA_STUDY}
    assert study_uids(stored, tmp_path, "DG_CT") == {CT_STUDY, LIJIA_STUDY}
    assert study_uids(stored, tmp_path, "CNTY_PACS") == {CT_STUDY, LIJIA_STUDY, ZZ_STUDY}
    assert study_uids(stored, tmp_path, "ZZ_DR") == {ZZ_STUDY}
    assert study_uids(stored, tmp_path, "ZZ_DR", f"StudyInstanceUID={CT_STUDY}") == set()
    patients = findscu(stored, tmp_path, "ZZ_DR", "QueryRetrieveLevel=PATIENT", "PatientID", model="-P")
    assert [p.PatientID for p in patients] == ["X1EXAMPLE"]


def test_find_matching_and_chinese_names(stored: Receiver, tmp_path: Path) -> None:
    county = "CNTY_PACS"
    found = findscu(
        stored, tmp_path, county, "SpecificCharacterSet=ISO_IR 192", "QueryRetrieveLevel=STUDY",
        "StudyInstanceUID", "PatientName=王*",
    )
    assert {(ds.StudyInstanceUID, str(ds.PatientName)) for ds in found} == {
        (LIJIA_STUDY, "Wang^XiaoDong=王^小东"),  # stored as GB18030
        (ZZ_STUDY, "Wang^XiaoDong=王^小東"),  # stored as ISO_IR 192
    }
    assert study_uids(stored, tmp_path, county, "PatientName=wang^xiaodong") == {LIJIA_STUDY, ZZ_STUDY}
    assert study_uids(stored, tmp_path, county, "PatientID=X?EXAMPLE") == {LIJIA_STUDY, ZZ_STUDY}
    assert study_uids(stored, tmp_path, county, "PatientID=x?example") == set()  # case-sensitive
    assert study_uids(stored, tmp_path, county, "PatientID=X2*") == {LIJIA_STUDY}
    assert study_uids(stored, tmp_path, county, f"StudyInstanceUID={CT_STUDY}\\{ZZ_STUDY}") == {CT_STUDY, ZZ_STUDY}
    assert study_uids(stored, tmp_path, county, "StudyDate=20030101-20031231") == {CT_STUDY}
    assert study_uids(stored, tmp_path, county, "StudyDate=-20030417") == {CT_STUDY}
    assert study_uids(stored, tmp_path, county, "StudyDate=20030418-") == set()
    assert study_uids(stored, tmp_path, county, "StudyDate=20030417", "StudyTime=100000-110000") == {CT_STUDY}
    assert study_uids(stored, tmp_path, county, "ModalitiesInStudy=MR\\CT") == {CT_STUDY}


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on ``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def destination(tmp_path: Path, sessions: sessionmaker) -> Iterator[Path]:
    """A dcmtk storescp writing what it receives bit for bit, registered as CNTY_PACS's return address."""
    port, out = free_port(), tmp_path / "received"
    out.mkdir()
    with sessions() as session, session.begin():
        session.execute(update(Site).where(Site.code == "CNTY").values(return_host="127.0.0.1", return_port=port))
    scp = subprocess.Popen(
        [tool("storescp"), "+B", "+xa", "-aet", "CNTY_PACS", "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: listening(port), scp, "storescp listening")
        yield out
    finally:
        scp.terminate()
        scp.wait(10)


def move(node: Receiver, calling_ae: str, destination: str, study_uid: str) -> list[Dataset]:
    """The statuses of a pynetdicom C-MOVE of a study."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", node.config.dicom.port, ae_title="TELERAD")
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    try:
        responses = assoc.send_c_move(query, destination, StudyRootQueryRetrieveInformationModelMove)
        return [status for status, _ in responses]
    finally:
        assoc.release()


def test_move_sends_the_stored_bytes_to_a_registered_destination(
    stored: Receiver, data: Path, destination: Path
) -> None:
    command = [tool("movescu"), "-S", "-aet", "CNTY_PACS", "-aec", "TELERAD", "-aem", "CNTY_PACS"]
    command += ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={CT_STUDY}"]
    run = subprocess.run([*command, "127.0.0.1", str(stored.config.dicom.port)], capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr
    received = {dcmread(path, stop_before_pixels=True).SOPInstanceUID: body(path) for path in destination.iterdir()}
    originals = {dcmread(path, stop_before_pixels=True).SOPInstanceUID: body(path) for path in ct_files(data)}
    assert received == originals

    assert [status.Status for status in move(stored, "CNTY_PACS", "NOWHERE", CT_STUDY)] == [0xA801]
    final = move(stored, "ZZ_DR", "CNTY_PACS", CT_STUDY)[-1]  # DG_CT's study is not ZZ_DR's to move
    assert (final.Status, final.NumberOfCompletedSuboperations) == (0x0000, 0)
    final = move(stored, "CNTY_PACS", "CNTY_PACS", "")[-1]
    assert final.Status == 0xA900 and "needs StudyInstanceUID" in final.ErrorComment
    with stored.sessions() as session, session.begin():  # Zhaozhuang's report receiver, listening here too
        session.execute(update(Site).where(Site.code == "VIL-ZHAOZHUANG").values(
            return_host="127.0.0.1", return_port=session.scalar(select(Site.return_port).where(Site.code == "CNTY"))
        ))
    final = move(stored, "CNTY_PACS", "ZZ_RPT", CT_STUDY)[-1]  # the county may not hand DG_CT's images to Zhaozhuang
    assert final.Status == 0xC001 and "ZZ_RPT may not receive study" in final.ErrorComment
    assert len(list(destination.iterdir())) == len(originals)


def get(
    node: Receiver, calling_ae: str, study_uids: list[str], contexts: list[tuple[str, str]]
) -> tuple[list[Dataset], dict[str, bytes]]:
    """C-GET each study offering the storage ``contexts``: the final statuses and the data sets received."""
    received: dict[str, bytes] = {}

    def on_store(event: Event) -> int:
        received[event.request.AffectedSOPInstanceUID] = event.request.DataSet.getvalue()
        return 0x0000

    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    roles = [build_role(sop_class, scp_role=True) for sop_class in sorted({sop for sop, _ in contexts})]
    handlers = [(evt.EVT_C_STORE, on_store)]
    assoc = ae.associate("127.0.0.1", node.config.dicom.port, ae_title="TELERAD", ext_neg=roles, evt_handlers=handlers)
    assert assoc.is_established
    finals = []
    try:
        for study_uid in study_uids:
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = study_uid
            *_, (final, _) = assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)
            finals.append(final)
    finally:
        assoc.release()
    return finals, received


def test_get_gives_back_the_stored_bytes_in_any_transfer_syntax(stored: Receiver, data: Path) -> None:
    store(stored, "DG_DR", [data / name for name in COMPRESSED])
    files = [data / name for name in COMPRESSED] + ct_files(data)
    metas = [read_file_meta_info(path) for path in files]
    studies = list(dict.fromkeys(dcmread(path, stop_before_pixels=True).StudyInstanceUID for path in files))
    contexts = sorted({(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID) for meta in metas})

    finals, received = get(stored, "DG_CT", studies, contexts)
    assert [(final.Status, final.NumberOfCompletedSuboperations) for final in finals] == [(0, 1)] * 4 + [(0, 3)]
    assert received == {meta.MediaStorageSOPInstanceUID: body(path) for meta, path in zip(metas, files, strict=True)}

    # The CT study is stored as Implicit VR Little Endian: offered only Explicit, each sub-operation fails.
    [final], received = get(stored, "DG_CT", [CT_STUDY], [(CTImageStorage, ExplicitVRLittleEndian)])
    assert (final.Status, final.NumberOfFailedSuboperations, final.NumberOfCompletedSuboperations) == (0xA702, 3, 0)
    assert received == {}
    [final], received = get(stored, "ZZ_DR", [CT_STUDY], [(CTImageStorage, ImplicitVRLittleEndian)])
    assert (final.Status, final.NumberOfCompletedSuboperations, received) == (0x0000, 0, {})


def find_status(
    node: Receiver,
    query: Dataset,
    model: str = StudyRootQueryRetrieveInformationModelFind,
    calling_ae: str = "CNTY_PACS",
) -> Dataset:
    """The final status of a pynetdicom C-FIND."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(model)
    assoc = ae.associate("127.0.0.1", node.config.dicom.port, ae_title="TELERAD")
    assert assoc.is_established
    try:
        *_, (final, _) = assoc.send_c_find(query, model)
        return final
    finally:
        assoc.release()


def identifier(**values: str) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.filterwarnings("ignore:Invalid value for VR IS")
def test_malformed_identifiers_get_a_failure_and_the_node_keeps_serving(stored: Receiver, tmp_path: Path) -> None:
    bad_series_number = identifier(QueryRetrieveLevel="SERIES")
    bad_series_number[0x00200011] = RawDataElement(Tag(0x00200011), "IS", 4, b"one ", 0, False, True)
    cases = [
        (identifier(PatientName="*"), 0xA900, "missing Query/Retrieve Level"),
        (identifier(QueryRetrieveLevel="FOO"), 0xA900, "not in this information model"),
        (identifier(QueryRetrieveLevel="PATIENT", PatientID=""), 0xA900, "not in this information model"),
        (bad_series_number, 0xC000, "not an integer"),
    ]
    for query, status, comment in cases:
        final = find_status(stored, query)
        assert (final.Status, comment in final.ErrorComment) == (status, True), query

    patient_root = PatientRootQueryRetrieveInformationModelFind
    assert find_status(stored, identifier(QueryRetrieveLevel="PATIENT", PatientID=""), patient_root).Status == 0
    [final], _ = get(stored, "DG_CT", [""], [(CTImageStorage, ImplicitVRLittleEndian)])
    assert final.Status == 0xA900 and "needs StudyInstanceUID" in final.ErrorComment
    del stored.registry.senders["ZZ_DR"]  # dropped from the registry; the AE's list of titles not yet refreshed
    final = find_status(stored, identifier(QueryRetrieveLevel="STUDY"), calling_ae="ZZ_DR")
    assert (final.Status, final.ErrorComment) == (0x0124, "calling AE title not registered")
    assert study_uids(stored, tmp_path, "CNTY_PACS") == {CT_STUDY, LIJIA_STUDY, ZZ_STUDY}
