"""C-STORE into the archive: what a station sends is on disk, indexed and attributed — or refused precisely."""

from __future__ import annotations

import hashlib
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import Verification
from sqlalchemy import delete, func, select
from sqlalchemy.orm import sessionmaker

from conftest import shared_data
from dicom_files import copy_with_new_uids, send, storescu
from pacs_node.index import Instance, InstanceVersion, Patient, Study, UidCollision
from pacs_node.node import Receiver
from pacs_node.storage import FileStorage
from telerad.audit import AuditEvent
from telerad.config import Config
from telerad.db import make_engine, make_session_factory
from telerad.sites import Site, SiteAE


def dataset_bytes(data: bytes) -> bytes:
    """The encoded dataset after the 128-byte preamble, "DICM" and the file meta group."""
    meta = dcmread(BytesIO(data), stop_before_pixels=True, specific_tags=[]).file_meta
    return data[128 + 4 + 12 + meta.FileMetaInformationGroupLength :]


def instance(sessions: sessionmaker, uid: str) -> Instance | None:
    with sessions() as session:
        return session.scalar(select(Instance).where(Instance.sop_instance_uid == uid))


def count(sessions: sessionmaker, model: type) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_storescu_series_is_on_disk_indexed_and_attributed(node: Receiver, config: Config, sessions, data: Path):
    files = sorted((data / "ct/series_JANCT000_3slice").glob("*.dcm"))
    result = storescu(config.dicom.port, "DG_CT", files)
    assert result.returncode == 0, result.stderr
    storage = FileStorage(config.data_dir / "storage")
    with sessions() as session:
        study = session.scalars(select(Study)).one()
        site = session.get(Site, study.site_id)
        assert site.code == "TS-DONGGUAN"
        assert (study.num_series, study.num_instances, study.modalities) == (1, 3, "CT")
        assert study.patient.patient_id == "99000" and study.patient.issuer == "site:TS-DONGGUAN"
        for path in files:
            original = dcmread(path)
            stored = session.scalar(select(Instance).where(Instance.sop_instance_uid == original.SOPInstanceUID))
            on_disk = storage.read(stored.storage_key)
            assert hashlib.sha256(on_disk).hexdigest() == stored.sha256 == Path(storage.path(stored.storage_key)).stem
            assert stored.size == len(on_disk)
            assert dataset_bytes(on_disk) == dataset_bytes(path.read_bytes())


@pytest.mark.parametrize(
    ("relative", "sop_class_name"),
    [
        ("ct/CTImage_MISTER_CT_implicitLE.dcm", "CT Image Storage"),
        ("ct/eCT_CT0012_enhanced_2frame.dcm", "Enhanced CT Image Storage"),
        ("xray/RG1_UNCR_CR_1955x1841.dcm", "Computed Radiography Image Storage"),
        ("xray/dx_image_highdicom_Fujifilm.dcm", "Digital X-Ray Image Storage - For Presentation"),
        ("edge/charset/chrX1.dcm", "Secondary Capture Image Storage"),
        ("ecg/mortara_12lead_anonymous_ecg.dcm", "12-lead ECG Waveform Storage"),
        ("compressed/dicomParser_report_dfl_SR.dcm", "Enhanced SR Storage"),
        ("edge/pydicom_reportsi_with_empty_number_tags.dcm", "Basic Text SR Storage"),
        ("compressed/cs3d_CTImage_ts/CT_jpeg_baseline_50.dcm", "CT Image Storage"),
        ("compressed/cs3d_CTImage_ts/CT_jpeg_extended_51.dcm", "CT Image Storage"),
        ("compressed/cs3d_CTImage_ts/CT_jpeg_lossless_57.dcm", "CT Image Storage"),
        ("compressed/cs3d_CTImage_ts/CT_jpeg_lossless_sv1_70.dcm", "CT Image Storage"),
        ("compressed/cs3d_CTImage_ts/CT_jpegls_lossless_80.dcm", "CT Image Storage"),
        ("compressed/cs3d_CTImage_ts/CT_jpegls_near_lossless_81.dcm", "CT Image Storage"),
        ("compressed/cs3d_CTImage_ts/CT_j2k_lossless_90.dcm", "CT Image Storage"),
        ("compressed/cs3d_CTImage_ts/CT_j2k_91.dcm", "CT Image Storage"),
        ("compressed/cs3d_CTImage_ts/CT_rle_5.dcm", "CT Image Storage"),
        ("compressed/cs3d_CTImage_ts/CT_deflate_1.99.dcm", "CT Image Storage"),
    ],
)
def test_every_sop_class_and_transfer_syntax_is_kept_exactly(
    node: Receiver, config: Config, sessions, relative: str, sop_class_name: str
):
    path = shared_data() / relative
    original = dcmread(path, stop_before_pixels=True)
    assert original.SOPClassUID.name == sop_class_name
    (status,) = send(config.dicom.port, "DG_CT", path)
    assert status.Status == 0x0000
    stored = instance(sessions, original.SOPInstanceUID)
    assert stored.transfer_syntax == original.file_meta.TransferSyntaxUID
    on_disk = FileStorage(config.data_dir / "storage").read(stored.storage_key)
    assert dataset_bytes(on_disk) == dataset_bytes(path.read_bytes())  # as sent, never transcoded


def _pdf_dataset() -> Dataset:
    """An Encapsulated PDF (PS3.3 A.45) around a one-page PDF."""
    pdf = (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
        b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    )
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "P-1", "Pdf^Patient", "DOC"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    return ds


def test_general_ecg_dx_for_processing_and_encapsulated_pdf_are_accepted(
    node: Receiver, config: Config, sessions, data: Path, tmp_path: Path
):
    ecg = copy_with_new_uids(data / "ecg/mortara_12lead_anonymous_ecg.dcm", tmp_path, SOPClassUID="1.2.840.10008.5.1.4.1.1.9.1.2")
    dx = copy_with_new_uids(data / "xray/dx_image_highdicom_Fujifilm.dcm", tmp_path, SOPClassUID="1.2.840.10008.5.1.4.1.1.1.1.1")
    pdf = _pdf_dataset()
    statuses = send(config.dicom.port, "LIJIA_ECG", ecg, dx, pdf)
    assert [s.Status for s in statuses] == [0, 0, 0]
    for uid in (dcmread(ecg).SOPInstanceUID, dcmread(dx).SOPInstanceUID, pdf.SOPInstanceUID):
        assert instance(sessions, uid) is not None


def test_unregistered_calling_ae_title_is_rejected_at_association(node: Receiver, config: Config, caplog):
    ae = AE(ae_title="STRANGER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", config.dicom.port, ae_title="TELERAD")
    assert assoc.is_rejected
    rejection = assoc.acceptor.primitive
    assert (rejection.result, rejection.result_source, rejection.diagnostic) == (0x01, 0x01, 0x03)
    assert "calling AE title 'STRANGER'" in caplog.text and "not recognised" in caplog.text


def test_same_instance_twice_is_idempotent(node: Receiver, config: Config, sessions, data: Path):
    path = data / "ct/CT1_UNC_NEMA_WG04_explicitLE.dcm"
    first, second = send(config.dicom.port, "DG_CT", path, path)
    assert first.Status == second.Status == 0x0000
    assert count(sessions, Instance) == 1 and count(sessions, InstanceVersion) == 0
    assert len(list((config.data_dir / "storage/objects").rglob("*.dcm"))) == 1
    with sessions() as session:
        assert session.scalars(select(Study)).one().num_instances == 1


def test_changed_content_from_same_site_replaces_and_keeps_history(
    node: Receiver, config: Config, sessions, data: Path, tmp_path: Path
):
    original = copy_with_new_uids(data / "ct/CT_small_pydicom.dcm", tmp_path / "a")
    corrected = dcmread(original)
    corrected.StudyDescription = "CT chest, corrected"
    assert send(config.dicom.port, "DG_CT", original)[0].Status == 0
    first = instance(sessions, corrected.SOPInstanceUID)
    assert send(config.dicom.port, "DG_DR", corrected)[0].Status == 0  # another AE of the same site
    current = instance(sessions, corrected.SOPInstanceUID)
    assert current.version == 2 and current.sha256 != first.sha256
    with sessions() as session:
        (old,) = session.scalars(select(InstanceVersion)).all()
        assert (old.sha256, old.version, old.replaced_by_sha256) == (first.sha256, 1, current.sha256)
        assert session.scalars(select(Study)).one().description == "CT chest, corrected"
        assert session.scalars(select(Study)).one().num_instances == 1
        assert session.scalar(select(AuditEvent).where(AuditEvent.action == "instance.replaced")) is not None
    storage = FileStorage(config.data_dir / "storage")
    assert storage.exists(old.storage_key) and storage.exists(current.storage_key)


def test_uid_from_another_site_is_refused_and_flagged(
    node: Receiver, config: Config, sessions, data: Path, tmp_path: Path
):
    original = copy_with_new_uids(data / "ct/CT_small_pydicom.dcm", tmp_path)
    assert send(config.dicom.port, "DG_CT", original)[0].Status == 0
    before = instance(sessions, dcmread(original).SOPInstanceUID)
    impostor = dcmread(original)
    impostor.PatientName = "Someone^Else"
    (status,) = send(config.dicom.port, "ZZ_DR", impostor)
    assert status.Status == 0xC001
    assert "belongs to another site" in status.ErrorComment
    after = instance(sessions, impostor.SOPInstanceUID)
    assert (after.sha256, after.version, after.site_id) == (before.sha256, 1, before.site_id)
    with sessions() as session:
        flagged = session.scalars(select(UidCollision)).one()
        assert flagged.uid == impostor.SOPInstanceUID and flagged.calling_ae == "ZZ_DR"
        assert flagged.resolved_at is None
        assert session.scalars(select(Patient)).one().name != "Someone^Else"


def test_new_instance_into_another_sites_study_is_refused(
    node: Receiver, config: Config, sessions, data: Path, tmp_path: Path
):
    original = copy_with_new_uids(data / "ct/CT_small_pydicom.dcm", tmp_path)
    assert send(config.dicom.port, "DG_CT", original)[0].Status == 0
    intruder = dcmread(original)
    intruder.SOPInstanceUID = intruder.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    (status,) = send(config.dicom.port, "XH_DR", intruder)
    assert status.Status == 0xC001 and "Study Instance UID" in status.ErrorComment
    assert count(sessions, Instance) == 1


def _meta_then(tmp_path: Path, body: bytes) -> Path:
    """A file with a valid preamble and file meta followed by ``body`` as its dataset."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    path = tmp_path / "broken.dcm"
    ds.save_as(path, enforce_file_format=True)
    path.write_bytes(path.read_bytes() + body)
    return path


@pytest.mark.parametrize(
    ("change", "comment"),
    [
        ("StudyInstanceUID", "missing StudyInstanceUID"),
        ("SeriesInstanceUID", "missing SeriesInstanceUID"),
    ],
)
def test_dataset_without_a_required_uid_is_refused(
    node: Receiver, config: Config, sessions, data: Path, tmp_path: Path, change: str, comment: str
):
    ds = dcmread(copy_with_new_uids(data / "ct/CT_small_pydicom.dcm", tmp_path))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    delattr(ds, change)
    ae = AE(ae_title="DG_CT")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", config.dicom.port, ae_title="TELERAD")
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    assert 0xC000 <= status.Status <= 0xCFFF
    assert comment in status.ErrorComment
    assert count(sessions, Instance) == 0 and count(sessions, Study) == 0


@pytest.mark.parametrize(
    ("body", "comment"),
    [
        # a sequence whose item is cut short
        (b"\x08\x00\x16\x00SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\x10\x00\x00\x00abc", "cannot parse dataset"),
        # a SOP Class UID that is not a UID
        (b"\x08\x00\x16\x00UI\x10\x00" + b"A" * 16, "missing StudyInstanceUID"),
        (b"\x08\x00\x16\x00UI\x10\x00" + b"A" * 16 + b"\x08\x00\x18\x00UI\x02\x001\x00"
         b"\x20\x00\x0d\x00UI\x02\x002\x00\x20\x00\x0e\x00UI\x02\x003\x00", "invalid SOPClassUID 'AAAA"),
    ],
    ids=["truncated-sequence", "no-uids", "invalid-uid"],
)
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_unparseable_dataset_is_refused_and_node_keeps_serving(
    node: Receiver, config: Config, sessions, tmp_path: Path, data: Path, body: bytes, comment: str
):
    (status,) = send(config.dicom.port, "DG_CT", _meta_then(tmp_path, body))
    assert status.Status == 0xC000 and status.ErrorComment.startswith(comment)
    assert count(sessions, Instance) == 0
    (status,) = send(config.dicom.port, "DG_CT", data / "ct/CT_small_pydicom.dcm")
    assert status.Status == 0


def test_an_image_cut_short_in_its_pixel_data_is_refused(node: Receiver, config: Config, sessions, data: Path):
    (status,) = send(config.dicom.port, "DG_CT", data / "edge/pydicom_MR_truncated.dcm")
    assert status.Status == 0xC000 and status.ErrorComment == "Pixel Data is truncated: 8130 of 8192 bytes"
    assert count(sessions, Instance) == 0 and count(sessions, Study) == 0


def test_disk_failure_answers_out_of_resources(node: Receiver, config: Config, sessions, data: Path, tmp_path: Path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the storage folder should be")
    node.archive.storage.root = blocked
    (status,) = send(config.dicom.port, "DG_CT", data / "ct/CT_small_pydicom.dcm")
    assert status.Status == 0xA700 and "storage failed" in status.ErrorComment
    assert count(sessions, Instance) == 0


def test_database_failure_answers_a_failure_so_the_sender_retries(node: Receiver, config: Config, sessions, data: Path):
    node.archive.sessions = make_session_factory(make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    (status,) = send(config.dicom.port, "DG_CT", data / "ct/CT_small_pydicom.dcm")
    assert status.Status == 0xA701 and "index unavailable" in status.ErrorComment
    assert count(sessions, Instance) == 0


def test_with_no_registered_ae_title_nobody_may_associate(node: Receiver, config: Config, sessions):
    with sessions() as session, session.begin():
        session.execute(delete(SiteAE))
    node.refresh()
    ae = AE(ae_title="DG_CT")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", config.dicom.port, ae_title="TELERAD")
    assert assoc.is_rejected and assoc.acceptor.primitive.diagnostic == 0x03
