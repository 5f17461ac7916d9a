"""Patients belong to their issuer; names in Chinese character sets arrive as Unicode."""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy import select

from dicom_files import copy_with_new_uids, send
from pacs_node.index import Patient, Study
from pacs_node.node import Receiver
from telerad.config import Config


def test_gb18030_gbk_and_utf8_names_are_stored_as_unicode(
    node: Receiver, config: Config, sessions, data: Path, tmp_path: Path
):
    utf8 = copy_with_new_uids(data / "edge/charset/chrX1.dcm", tmp_path, PatientID="U1")
    gb18030 = copy_with_new_uids(data / "edge/charset/chrX2.dcm", tmp_path, PatientID="G1")
    gbk = dcmread(copy_with_new_uids(data / "edge/charset/chrX2.dcm", tmp_path, PatientID="K1"))
    gbk.SpecificCharacterSet = "GBK"
    gbk.PatientName = "张^伟"
    gbk.ReferringPhysicianName = "刘^医生"
    assert [s.Status for s in send(config.dicom.port, "DG_CT", utf8, gb18030, gbk)] == [0, 0, 0]
    with sessions() as session:
        names = dict(session.execute(select(Patient.patient_id, Patient.name)).all())
        referring = session.scalar(select(Study.referring_physician).join(Patient).where(Patient.patient_id == "K1"))
    assert names == {"U1": "Wang^XiaoDong=王^小東", "G1": "Wang^XiaoDong=王^小东", "K1": "张^伟"}
    assert referring == "刘^医生"


def _patient_study(data: Path, folder: Path, patient_id: str, **extra: object) -> Path:
    return copy_with_new_uids(data / "ct/CT_small_pydicom.dcm", folder, PatientID=patient_id, **extra)


def test_same_patient_id_at_two_villages_is_two_patients(
    node: Receiver, config: Config, sessions, data: Path, tmp_path: Path
):
    assert send(config.dicom.port, "LIJIA_ECG", _patient_study(data, tmp_path, "1", PatientName="Li^Ming"))[0].Status == 0
    assert send(config.dicom.port, "ZZ_DR", _patient_study(data, tmp_path, "1", PatientName="Zhao^Hua"))[0].Status == 0
    with sessions() as session:
        patients = session.scalars(select(Patient).order_by(Patient.name)).all()
    assert [(p.issuer, p.patient_id, p.name) for p in patients] == [
        ("site:VIL-LIJIA", "1", "Li^Ming"),
        ("site:VIL-ZHAOZHUANG", "1", "Zhao^Hua"),
    ]
    assert patients[0].person_key is None and patients[1].person_key is None


def test_strong_identifier_links_one_person_across_sites_never_a_name(
    node: Receiver, config: Config, sessions, data: Path, tmp_path: Path
):
    def national(number: str) -> list[Dataset]:
        item = Dataset()
        item.PatientID, item.IssuerOfPatientID = number, "CN-RESIDENT-ID"
        return [item]

    same_person = [
        ("LIJIA_ECG", "7", "Wang^Li", national("110101195001010011")),
        ("DG_CT", "A-3391", "WANG^LI", national("110101195001010011")),
    ]
    namesake = ("ZZ_DR", "7", "Wang^Li", national("110101196002020022"))
    for calling, pid, name, others in [*same_person, namesake]:
        path = _patient_study(data, tmp_path, pid, PatientName=name, OtherPatientIDsSequence=others)
        assert send(config.dicom.port, calling, path)[0].Status == 0
    with sessions() as session:
        keys = dict(session.execute(select(Patient.issuer, Patient.person_key)).all())
    assert keys["site:VIL-LIJIA"] == keys["site:TS-DONGGUAN"] == "CN-RESIDENT-ID:110101195001010011"
    assert keys["site:VIL-ZHAOZHUANG"] == "CN-RESIDENT-ID:110101196002020022"


def test_issuer_of_patient_id_scopes_the_identity(node: Receiver, config: Config, sessions, data: Path, tmp_path: Path):
    for calling in ("DG_CT", "XH_DR"):
        path = _patient_study(data, tmp_path, "H-100", IssuerOfPatientID="COUNTY-HIS")
        assert send(config.dicom.port, calling, path)[0].Status == 0
    with sessions() as session:
        assert [(p.issuer, p.patient_id) for p in session.scalars(select(Patient))] == [("COUNTY-HIS", "H-100")]
        assert len(session.scalars(select(Study)).all()) == 2


def test_study_resent_with_corrected_patient_id_updates_that_study(
    node: Receiver, config: Config, sessions, data: Path, tmp_path: Path
):
    wrong = _patient_study(data, tmp_path / "wrong", "1234")
    corrected = dcmread(wrong)
    corrected.PatientID = "1243"
    assert send(config.dicom.port, "DG_CT", wrong)[0].Status == 0
    assert send(config.dicom.port, "DG_CT", corrected)[0].Status == 0
    with sessions() as session:
        study = session.scalars(select(Study)).one()
        assert study.patient.patient_id == "1243"
        assert study.num_instances == 1


def test_missing_patient_id_is_never_pooled(node: Receiver, config: Config, sessions, data: Path, tmp_path: Path):
    for _ in range(2):
        assert send(config.dicom.port, "DG_CT", _patient_study(data, tmp_path, ""))[0].Status == 0
    with sessions() as session:
        assert len(session.scalars(select(Patient)).all()) == 2
