"""12-lead ECG: reading the waveform, Telerad's own measurements against the devices', and the worker job.

Real files: pydicom's ``waveform_ecg.dcm`` (a Mortara ELI 250 recording, also
``ecg/mortara_12lead_anonymous_ecg.dcm`` in the shared data) and a GE
Marquette 12-lead stored as Hemodynamic Waveform Storage (240 Hz, mV units,
Deflated transfer syntax). Expected values are read from the files with
plain pydicom here, never through the code under test.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from sqlalchemy import func, select

from conftest import START
from dicom_files import copy_with_new_uids, send
from pacs_node.index import complete_stable_studies
from pacs_node.node import Receiver
from telerad import events
from telerad.config import Config
from telerad.events import OutboxEvent
from viewer import jobs
from viewer.ecg import LEADS, Ecg, EcgError, DeviceMeasurements, ecg_payload, read_ecg
from viewer.ecg_measurements import EcgMeasurement, MeasurementError, computed_for, frontal_axis, measure

WAVEFORM_ECG = Path(get_testdata_file("waveform_ecg.dcm"))
#: The device's measurements by code meaning (PS3.3 C.10.10), as our names.
DEVICE_NAMES = {"RR Interval": "rr", "PR Interval": "pr", "QRS Duration": "qrs", "QT Interval": "qt",
                "QTc Interval": "qtc", "P Axis": "p_axis", "QRS Axis": "qrs_axis", "T Axis": "t_axis",
                "Heart rate": "hr"}


def device_values(ds: Dataset) -> dict[str, float]:
    """The numeric annotations of a waveform object, read with plain pydicom."""
    return {
        DEVICE_NAMES[item.ConceptNameCodeSequence[0].CodeMeaning]: float(item.NumericValue)
        for item in ds.WaveformAnnotationSequence
        if "NumericValue" in item and item.ConceptNameCodeSequence[0].CodeMeaning in DEVICE_NAMES
    }


def raw_samples(group: Dataset) -> np.ndarray:
    """Samples × channels of a 16-bit signed multiplex group, straight from Waveform Data (PS3.3 C.10.9.1.3)."""
    assert (group.WaveformBitsAllocated, group.WaveformSampleInterpretation) == (16, "SS")
    data = np.frombuffer(group.WaveformData, dtype="<i2")
    return data[: group.NumberOfWaveformSamples * group.NumberOfWaveformChannels].reshape(
        group.NumberOfWaveformSamples, group.NumberOfWaveformChannels
    )


@pytest.fixture(scope="module")
def waveform_ecg() -> Dataset:
    return dcmread(WAVEFORM_ECG)


# -- reading ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", [0, 1234, 9999])
def test_leads_are_named_and_scaled_to_millivolts_from_microvolt_channels(waveform_ecg: Dataset, sample: int):
    ecg = read_ecg(waveform_ecg)
    rhythm = waveform_ecg.WaveformSequence[0]
    assert rhythm.MultiplexGroupLabel == "RHYTHM"
    assert list(ecg.leads) == list(LEADS)
    assert ecg.sampling_frequency == 1000.0 and ecg.duration_s == 10.0
    raw = raw_samples(rhythm)
    for column, channel in enumerate(rhythm.ChannelDefinitionSequence):
        assert channel.ChannelSensitivityUnitsSequence[0].CodeValue == "uV"
        microvolts = (
            raw[sample, column] * float(channel.ChannelSensitivity) * float(channel.ChannelSensitivityCorrectionFactor)
            + float(channel.ChannelBaseline)
        )
        meaning = channel.ChannelSourceSequence[0].CodeMeaning  # "Lead I (Einthoven)", "Lead aVR", "Lead V1" ...
        name = meaning.removeprefix("Lead ").split(" ")[0]
        assert ecg.leads[name][sample] == pytest.approx(microvolts / 1000.0)


def test_a_hemodynamic_waveform_with_the_12_leads_in_millivolts_is_read(data: Path):
    ds = dcmread(data / "ecg/ge_marquette_hemodynamic_wave_dfl.dcm")
    ecg = read_ecg(ds)
    group = ds.WaveformSequence[0]
    channel = group.ChannelDefinitionSequence[6]
    assert channel.ChannelSourceSequence[0].CodeMeaning == "Lead V1"
    assert channel.ChannelSensitivityUnitsSequence[0].CodeValue == "mV"
    expected = raw_samples(group)[500, 6] * float(channel.ChannelSensitivity) + float(channel.ChannelBaseline)
    assert ecg.sampling_frequency == 240.0 and list(ecg.leads) == list(LEADS)
    assert ecg.leads["V1"][500] == pytest.approx(expected)


def test_device_measurements_and_statements_are_read(waveform_ecg: Dataset):
    device = read_ecg(waveform_ecg).device
    expected = device_values(waveform_ecg)
    assert {name: quantity.value for name, quantity in device.values.items()} == expected
    assert expected == {"rr": 982, "pr": 161, "qrs": 75, "qt": 368, "qtc": 370, "p_axis": 74, "qrs_axis": 52,
                        "t_axis": 57}
    assert {quantity.unit for name, quantity in device.values.items() if "axis" not in name} == {"ms"}
    assert device.values["qrs_axis"].unit == "deg"
    texts = [item.UnformattedTextValue for item in waveform_ecg.WaveformAnnotationSequence
             if "UnformattedTextValue" in item]
    assert device.texts == texts == ["RITMO SINUSALE", "ECG NORMALE"]


def test_a_heart_rate_in_beats_per_minute_is_read(data: Path):
    device = read_ecg(dcmread(data / "ecg/ge_marquette_hemodynamic_wave_dfl.dcm")).device
    assert device.values["hr"].value == 69 and device.values["hr"].unit == "/min"


def test_an_image_is_not_a_waveform(data: Path):
    with pytest.raises(EcgError, match=r"^not a waveform object: CT Image Storage has no Waveform Sequence"):
        read_ecg(dcmread(data / "ct/CT_small_pydicom.dcm"))


def three_lead(ds: Dataset) -> Dataset:
    """The ECG cut down to its first three channels in every group, as a 3-lead Holter would store it."""
    cut = copy.deepcopy(ds)
    for group in cut.WaveformSequence:
        group.WaveformData = raw_samples(group)[:, :3].astype("<i2").tobytes()
        group.NumberOfWaveformChannels = 3
        group.ChannelDefinitionSequence = group.ChannelDefinitionSequence[:3]
    return cut


def test_a_waveform_without_the_12_leads_is_refused(waveform_ecg: Dataset):
    with pytest.raises(EcgError, match=r"^no multiplex group holds the 12 standard ECG leads \(group 1: I, II, III;"):
        read_ecg(three_lead(waveform_ecg))


def test_missing_limb_leads_are_derived_from_i_and_ii(waveform_ecg: Dataset):
    full = read_ecg(waveform_ecg)
    eight = copy.deepcopy(waveform_ecg)
    group = eight.WaveformSequence[0]
    keep = [0, 1, 6, 7, 8, 9, 10, 11]  # I, II, V1–V6
    group.WaveformData = raw_samples(group)[:, keep].astype("<i2").tobytes()
    group.NumberOfWaveformChannels = len(keep)
    group.ChannelDefinitionSequence = [group.ChannelDefinitionSequence[i] for i in keep]
    derived = read_ecg(eight)
    assert list(derived.leads) == list(LEADS)
    for name in ("III", "aVR", "aVL", "aVF"):  # the cart's own leads agree to its rounding (a few µV)
        assert np.max(np.abs(derived.leads[name] - full.leads[name])) < 0.005


# -- Telerad's measurements -------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["pydicom", "shared"])
def test_pr_qrs_and_qt_are_within_10_ms_of_the_device(source: str, data: Path):
    path = WAVEFORM_ECG if source == "pydicom" else data / "ecg/mortara_12lead_anonymous_ecg.dcm"
    ds = dcmread(path)
    device = device_values(ds)
    computed = measure(read_ecg(ds))
    assert abs(computed.pr_ms - device["pr"]) <= 10
    assert abs(computed.qrs_ms - device["qrs"]) <= 10
    assert abs(computed.qt_ms - device["qt"]) <= 10
    assert abs(computed.rr_ms - device["rr"]) <= 10
    assert abs(computed.qtc_bazett_ms - device["qtc"]) <= 10
    assert computed.beats == 10


def test_heart_rate_matches_the_device_at_240_hz(data: Path):
    ds = dcmread(data / "ecg/ge_marquette_hemodynamic_wave_dfl.dcm")
    computed = measure(read_ecg(ds))
    assert abs(computed.heart_rate - device_values(ds)["hr"]) <= 2
    assert None not in (computed.pr_ms, computed.qrs_ms, computed.qt_ms)


def test_qtc_by_bazett_and_fridericia(waveform_ecg: Dataset):
    computed = measure(read_ecg(waveform_ecg))
    rr_s = computed.rr_ms / 1000
    assert computed.qtc_bazett_ms == pytest.approx(computed.qt_ms / rr_s**0.5)
    assert computed.qtc_fridericia_ms == pytest.approx(computed.qt_ms / rr_s ** (1 / 3))
    assert computed.heart_rate == pytest.approx(60000 / computed.rr_ms)


def test_axes_are_near_the_device(waveform_ecg: Dataset):
    computed = measure(read_ecg(waveform_ecg))
    device = device_values(waveform_ecg)
    for name in ("p_axis", "qrs_axis", "t_axis"):
        assert abs(getattr(computed, name) - device[name]) <= 10, name


@pytest.mark.parametrize("degrees", [-150, -60, 0, 45, 90, 120, 180])
def test_frontal_axis_on_the_hexaxial_system(degrees: float):
    wave = np.hanning(50)
    angle = np.radians(degrees)
    lead_i, lead_avf = wave * np.cos(angle), wave * np.sin(angle) * np.sqrt(3) / 2
    assert frontal_axis(lead_i, lead_avf, 0, 50) == pytest.approx(degrees if degrees != 180 else 180, abs=1e-6)


FS = 500.0
#: P, Q, R, S and T amplitudes (mV) of the independent leads of a synthetic ECG.
AMPLITUDES = {"I": (0.08, -0.05, 0.8, -0.1, 0.25), "II": (0.12, -0.05, 1.1, -0.15, 0.3),
              "V1": (0.05, 0, 0.2, -0.9, -0.1), "V2": (0.06, 0, 0.4, -1.2, 0.4), "V3": (0.07, 0, 0.7, -0.8, 0.5),
              "V4": (0.08, -0.05, 1.2, -0.4, 0.5), "V5": (0.08, -0.08, 1.4, -0.2, 0.4),
              "V6": (0.07, -0.08, 1.1, -0.1, 0.3)}
#: Centre and width (s) of each wave relative to the R peak; T moves with the RR interval.
WAVES = ((-0.16, 0.020), (-0.022, 0.007), (0.0, 0.009), (0.024, 0.007), (0.28, 0.045))


def synthetic(rr: np.ndarray, p_waves: bool, fibrillation: float = 0.0) -> Ecg:
    """A 10 s 12-lead ECG of Gaussian waves at the given RR intervals (s), with optional fibrillatory waves."""
    rng = np.random.default_rng(7)
    t = np.arange(int(10 * FS)) / FS
    leads = {}
    for name, amplitudes in AMPLITUDES.items():
        values = 0.005 * rng.standard_normal(len(t))
        for r_peak, interval in zip(np.cumsum(rr), rr, strict=True):
            for number, ((centre, width), amplitude) in enumerate(zip(WAVES, amplitudes, strict=True)):
                scale = np.sqrt(interval) if number == 4 else 1.0
                if number or p_waves:
                    values += amplitude * np.exp(-0.5 * ((t - r_peak - centre * scale) / (width * scale)) ** 2)
        values += fibrillation * np.sin(2 * np.pi * 6.3 * t + rng.uniform(0, 2 * np.pi))
        leads[name] = values
    one, two = leads["I"], leads["II"]
    leads |= {"III": two - one, "aVR": -(one + two) / 2, "aVL": one - two / 2, "aVF": two - one / 2}
    return Ecg(FS, {name: leads[name] for name in LEADS}, DeviceMeasurements())


@pytest.mark.parametrize("rr_s", [1.0, 0.5])
def test_sinus_rhythm_has_a_pr_interval(rr_s: float):
    computed = measure(synthetic(np.full(int(10 / rr_s) + 1, rr_s), p_waves=True))
    assert computed.heart_rate == pytest.approx(60 / rr_s, abs=1)
    assert 150 <= computed.pr_ms <= 210  # P peak 160 ms before R, 2.5 widths = 50 ms
    assert 60 <= computed.qrs_ms <= 90
    assert computed.p_axis is not None


@pytest.mark.parametrize("seed", range(3, 8))
@pytest.mark.parametrize("fibrillation", [0.0, 0.05, 0.1])
def test_atrial_fibrillation_has_no_pr_interval_never_a_guess(seed: int, fibrillation: float):
    rr = np.random.default_rng(seed).uniform(0.45, 1.1, 20)  # irregularly irregular, 55–133 bpm
    computed = measure(synthetic(rr, p_waves=False, fibrillation=fibrillation))
    assert computed.pr_ms is None and computed.p_axis is None
    assert computed.qrs_ms is not None and computed.qt_ms is not None


def test_a_flat_line_cannot_be_measured():
    flat = Ecg(FS, {name: np.zeros(5000) for name in LEADS}, DeviceMeasurements())
    with pytest.raises(MeasurementError, match=r"^only 0 QRS complex\(es\) found in 10\.0 s$"):
        measure(flat)


def test_the_viewer_payload_is_compact_json(waveform_ecg: Dataset):
    ecg = read_ecg(waveform_ecg)
    payload = ecg_payload(ecg, measure(ecg))
    assert payload["sampling_frequency"] == 500.0 and payload["lead_order"] == list(LEADS)
    assert all(len(values) == 5000 and isinstance(values[0], int) for values in payload["samples"].values())
    r_peak = int(np.argmax(ecg.leads["V5"][:1500]))  # decimated by two: the same instant at half the index
    assert payload["samples"]["V5"][r_peak // 2] == pytest.approx(ecg.leads["V5"][r_peak] * 1000, abs=60)
    assert payload["computed"]["source"] == "telerad" and payload["device"]["source"] == "device"
    assert payload["device"]["values"]["qt"] == {"value": 368.0, "unit": "ms"}
    assert len(json.dumps(payload, separators=(",", ":"))) < 300_000


# -- the worker job ---------------------------------------------------------------------------------------


@pytest.fixture
def ecg_handlers(monkeypatch: pytest.MonkeyPatch, config: Config, sessions) -> Iterator[None]:
    """The viewer's jobs configured as the worker does, alone on the study events (for this test only)."""
    for topic in jobs.TOPICS:
        monkeypatch.setitem(events._handlers, topic, [])  # noqa: SLF001
    jobs.configure(config, sessions)
    jobs.subscribe()
    assert all(events._handlers[topic] == [jobs.on_study] for topic in jobs.TOPICS)  # noqa: SLF001
    yield
    jobs._context = None  # noqa: SLF001 - the next test configures its own


def dispatch_waiting(sessions) -> list[tuple[int, str, dict]]:
    """What the relay and a worker do, without Redis: every waiting event is dispatched once."""
    with sessions() as session, session.begin():
        waiting = session.scalars(select(OutboxEvent).where(OutboxEvent.sent_at.is_(None)).order_by(OutboxEvent.id))
        todo = [(event.id, event.topic, event.payload) for event in waiting]
        for event in session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_([e[0] for e in todo]))):
            event.sent_at = START
    for event in todo:
        events.dispatch(*event)
    return todo


def rows(sessions) -> list[EcgMeasurement]:
    with sessions() as session:
        return list(session.scalars(select(EcgMeasurement).order_by(EcgMeasurement.id)))


def test_the_worker_measures_a_sent_ecg_once_and_records_a_broken_one(
    node: Receiver, config: Config, sessions, ecg_handlers, at, tmp_path: Path
):
    good = copy_with_new_uids(WAVEFORM_ECG, tmp_path / "good")
    broken_ds = three_lead(dcmread(WAVEFORM_ECG))
    broken_ds.StudyInstanceUID = dcmread(good).StudyInstanceUID  # a second ECG of the same study
    broken = copy_with_new_uids(WAVEFORM_ECG, tmp_path / "broken")
    broken_ds.SOPInstanceUID = broken_ds.file_meta.MediaStorageSOPInstanceUID = dcmread(broken).SOPInstanceUID
    broken_ds.save_as(broken, enforce_file_format=True)
    assert [status.Status for status in send(config.dicom.port, "LIJIA_ECG", good, broken)] == [0, 0]

    at[0] = START + timedelta(seconds=61)
    with sessions() as session, session.begin():
        [study_uid] = complete_stable_studies(session, config.dicom.stable_seconds)
    [(event_id, topic, payload)] = dispatch_waiting(sessions)
    assert topic == "study.complete"

    measured, failed = sorted(rows(sessions), key=lambda row: row.error is not None)
    assert measured.sop_instance_uid == dcmread(good).SOPInstanceUID and measured.study_uid == study_uid
    assert measured.error is None and measured.algorithm.startswith("telerad-ecg")
    device = device_values(dcmread(good))
    assert abs(measured.pr_ms - device["pr"]) <= 10 and abs(measured.qt_ms - device["qt"]) <= 10
    assert measured.device["values"]["qrs"] == {"value": 75.0, "unit": "ms"}
    assert failed.error.startswith("EcgError: no multiplex group holds the 12 standard ECG leads")
    assert failed.qrs_ms is None and failed.computed_at == START + timedelta(seconds=61)

    # The same event again (an rq retry, a relay after a Redis outage) changes nothing, nor does a later update.
    at[0] = START + timedelta(hours=1)
    events.dispatch(event_id, topic, payload)
    events.dispatch(event_id + 1000, "study.updated", payload)
    again = sorted(rows(sessions), key=lambda row: row.error is not None)
    assert [(row.id, row.computed_at, row.qt_ms, row.error) for row in again] == [
        (row.id, row.computed_at, row.qt_ms, row.error) for row in (measured, failed)
    ]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(EcgMeasurement)) == 2
        assert computed_for(session, measured.sop_instance_uid).as_dict()["qt_ms"] == round(measured.qt_ms)
        assert computed_for(session, "1.2.3.4") is None

    # A corrected version of the good ECG (same SOP Instance UID, new bytes) is measured again.
    corrected = dcmread(good)
    corrected.PatientName = "Corrected^Name"
    corrected.save_as(good, enforce_file_format=True)
    assert send(config.dicom.port, "LIJIA_ECG", good)[0].Status == 0
    at[0] = START + timedelta(hours=2)
    with sessions() as session, session.begin():
        assert complete_stable_studies(session, config.dicom.stable_seconds) == [study_uid]
    assert [topic for _, topic, _ in dispatch_waiting(sessions)] == ["study.updated"]
    with sessions() as session:
        remeasured = computed_for(session, measured.sop_instance_uid)
        assert remeasured.sha256 != measured.sha256 and remeasured.computed_at == START + timedelta(hours=2)
        assert remeasured.qt_ms == measured.qt_ms
        assert computed_for(session, failed.sop_instance_uid).computed_at == failed.computed_at
