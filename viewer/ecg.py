"""Reading a 12-lead ECG from a DICOM waveform object, and its JSON for the browser's ECG view.

A waveform object (PS3.3 C.10.9, the Waveform module; the 12-lead ECG IOD of
PS3.3 A.34.3) holds one or more *multiplex groups* in the Waveform Sequence
(5400,0100): each has its channels, sampling frequency and interleaved samples.
A 12-lead ECG usually carries a 10 s "RHYTHM" group and often a derived
"MEDIAN BEAT" group; :func:`read_ecg` picks the rhythm group that holds the
twelve standard leads (the longest one if several do).

Samples become millivolts through the channel definition (PS3.3 C.10.9.1.4.3):
``value = raw × Channel Sensitivity × Channel Sensitivity Correction Factor +
Channel Baseline``, in the units of the Channel Sensitivity Units Sequence
(UCUM ``uV``, ``mV`` …). pydicom's ``Dataset.waveform_array`` applies exactly
that formula (and nothing more), so this module only converts the units.

Leads are named from the Channel Source Sequence (PS3.16 CID 3001 "ECG
Leads": SCP-ECG codes ``5.6.3-9-n`` or their MDC equivalents ``2:n``), falling
back to the code meaning ("Lead I (Einthoven)", "Lead aVR") and the channel
label. A group with I, II and V1–V6 but without the augmented limb leads gets
III, aVR, aVL and aVF derived by Einthoven's and Goldberger's equations.

The device's own measurements come from the Waveform Annotation Sequence
(0040,B020; PS3.3 C.10.10): coded numeric annotations (Concept Name Code
Sequence, Numeric Value, Measurement Units Code Sequence) and the free text
the device wrote (Unformatted Text Value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset
from scipy import signal

if TYPE_CHECKING:
    from viewer.ecg_measurements import EcgMeasurement, Measurements

#: The twelve standard leads in display order.
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

#: CID 3001 lead numbers: SCP-ECG ``5.6.3-9-n`` and MDC ``2:n`` share them.
_LEAD_NUMBERS = {1: "I", 2: "II", 61: "III", 62: "aVR", 63: "aVL", 64: "aVF",
                 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6"}
_LEAD_CODE = re.compile(r"^(?:5\.6\.3-9-|2:)(\d+)$")
_LEAD_TEXT = re.compile(r"^(?:lead\s+)?(i{1,3}|avr|avl|avf|v[1-6])\b", re.IGNORECASE)
_BY_LOWER = {name.lower(): name for name in LEADS}

#: UCUM voltage units (Channel Sensitivity Units, CID 3082) and their factor to millivolts.
_TO_MILLIVOLT = {"uv": 1e-3, "mv": 1.0, "v": 1e3, "nv": 1e-6}

#: Sample interpretations whose codes are plain integers (μ-law and A-law are not, PS3.3 C.10.9.1.5).
_LINEAR = {"SB", "UB", "SS", "US", "SL", "UL", "SV", "UV"}

#: Device measurements by stable name: the code meanings and codes (SCP-ECG, LOINC) they go by.
_MEASUREMENT_MEANINGS = {
    "hr": ("heart rate", "ventricular rate", "ventricular heart rate", "vent rate"),
    "rr": ("rr interval",),
    "pr": ("pr interval", "p-r interval"),
    "qrs": ("qrs duration", "qrs interval"),
    "qt": ("qt interval",),
    "qtc": ("qtc interval", "qt corrected"),
    "p_axis": ("p axis",),
    "qrs_axis": ("qrs axis", "r axis"),
    "t_axis": ("t axis",),
}
_MEASUREMENT_CODES = {
    "5.10.2.1-3": "rr", "5.13.5-7": "pr", "5.13.5-9": "qrs", "5.13.5-11": "qt", "5.10.2.5-5": "qtc",
    "5.10.3-11": "p_axis", "5.10.3-13": "qrs_axis", "5.10.3-15": "t_axis",
    "8867-4": "hr", "8625-6": "pr", "8633-0": "qrs", "8634-8": "qt", "8636-3": "qtc",
    "8626-4": "p_axis", "8632-2": "qrs_axis", "8638-1": "t_axis",
}
#: UCUM units normalised: intervals to ms, rates to /min, angles to deg.
_UNITS = {"ms": ("ms", 1.0), "s": ("ms", 1000.0), "/min": ("/min", 1.0), "{h.b.}/min": ("/min", 1.0),
          "{beats}/min": ("/min", 1.0), "{beat}/min": ("/min", 1.0), "bpm": ("/min", 1.0), "deg": ("deg", 1.0)}


class EcgError(ValueError):
    """The object is not a waveform, or holds no usable 12-lead ECG."""


@dataclass(frozen=True)
class Quantity:
    """A value with its unit (UCUM: ``ms``, ``/min``, ``deg``), as the device reported it."""

    value: float
    unit: str


@dataclass
class DeviceMeasurements:
    """What the acquiring device measured and wrote (PS3.3 C.10.10 Waveform Annotation)."""

    values: dict[str, Quantity] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The measurements as JSON-ready data."""
        return {
            "values": {name: {"value": q.value, "unit": q.unit} for name, q in self.values.items()},
            "texts": list(self.texts),
        }


@dataclass
class Ecg:
    """A 12-lead ECG: each lead in millivolts at one sampling frequency, and the device's measurements."""

    sampling_frequency: float
    leads: dict[str, np.ndarray]
    device: DeviceMeasurements
    group_label: str = ""

    @property
    def duration_s(self) -> float:
        """The length of the recording in seconds."""
        return len(next(iter(self.leads.values()))) / self.sampling_frequency


def read_ecg(ds: Dataset) -> Ecg:
    """The 12-lead ECG held by a waveform object; raises :class:`EcgError` when there is none."""
    groups = ds.get("WaveformSequence")
    if not groups:
        kind = ds.get("SOPClassUID", "unknown SOP class")
        name = getattr(kind, "name", kind)
        raise EcgError(f"not a waveform object: {name} has no Waveform Sequence (5400,0100)")
    candidates = []
    for index, group in enumerate(groups):
        names = _lead_names(group)
        if set(LEADS) <= set(names) or {"I", "II", "V1", "V2", "V3", "V4", "V5", "V6"} <= set(names):
            candidates.append((_is_rhythm(group), _duration(group), index, names))
    if not candidates:
        found = "; ".join(
            f"group {number}: {', '.join(name for name in _lead_names(group) if name) or 'no ECG leads'}"
            for number, group in enumerate(groups, start=1)
        )
        raise EcgError(f"no multiplex group holds the 12 standard ECG leads ({found})")
    _, _, index, names = max(candidates)
    group = groups[index]
    return Ecg(
        sampling_frequency=float(group.SamplingFrequency),
        leads=_complete_leads(_millivolts(ds, index, names)),
        device=device_measurements(ds),
        group_label=str(group.get("MultiplexGroupLabel", "")),
    )


def lead_name(channel: Dataset) -> str | None:
    """The standard name of a channel's lead (``"I"`` … ``"V6"``), or ``None`` for anything else."""
    for source in channel.get("ChannelSourceSequence", []):
        match = _LEAD_CODE.match(str(source.get("CodeValue", "")).strip())
        if match and int(match.group(1)) in _LEAD_NUMBERS:
            return _LEAD_NUMBERS[int(match.group(1))]
        name = _name_from_text(str(source.get("CodeMeaning", "")))
        if name:
            return name
    return _name_from_text(str(channel.get("ChannelLabel", "")))


def _name_from_text(text: str) -> str | None:
    match = _LEAD_TEXT.match(text.strip())
    return _BY_LOWER.get(match.group(1).lower()) if match else None


def _lead_names(group: Dataset) -> list[str | None]:
    return [lead_name(channel) for channel in group.get("ChannelDefinitionSequence", [])]


def _is_rhythm(group: Dataset) -> bool:
    """Original data (not a device's derived median beat), PS3.3 C.10.9.1.1."""
    return group.get("WaveformOriginality", "ORIGINAL") == "ORIGINAL" and "MEDIAN" not in str(
        group.get("MultiplexGroupLabel", "")
    ).upper()


def _duration(group: Dataset) -> float:
    return float(group.get("NumberOfWaveformSamples", 0)) / float(group.get("SamplingFrequency", 1) or 1)


def _millivolts(ds: Dataset, index: int, names: list[str | None]) -> dict[str, np.ndarray]:
    """The named channels of group ``index`` in millivolts (PS3.3 C.10.9.1.4.3)."""
    group = ds.WaveformSequence[index]
    interpretation = group.get("WaveformSampleInterpretation", "")
    if interpretation not in _LINEAR:
        raise EcgError(f"unsupported Waveform Sample Interpretation {interpretation!r} in group {index + 1}")
    if not group.get("SamplingFrequency"):
        raise EcgError(f"group {index + 1} has no Sampling Frequency (003A,001A)")
    # waveform_array applies raw × Sensitivity × Correction Factor + Baseline: only the units remain to convert.
    try:
        samples = ds.waveform_array(index)
    except (AttributeError, KeyError, ValueError) as exc:
        raise EcgError(f"the waveform data of group {index + 1} cannot be decoded: {exc}") from exc
    leads = {}
    for column, (name, channel) in enumerate(zip(names, group.ChannelDefinitionSequence, strict=True)):
        if name is None or name in leads:
            continue
        leads[name] = samples[:, column] * _millivolt_factor(channel, name)
    return leads


def _millivolt_factor(channel: Dataset, name: str) -> float:
    """The factor from the channel's sensitivity units to millivolts."""
    if channel.get("ChannelSensitivity") in (None, ""):
        raise EcgError(f"lead {name} has no Channel Sensitivity (003A,0210): its samples have no physical scale")
    units = channel.get("ChannelSensitivityUnitsSequence")
    if not units:
        raise EcgError(f"lead {name} has no Channel Sensitivity Units Sequence (003A,0211)")
    code = str(units[0].get("CodeValue", "")).strip().lower()
    meaning = str(units[0].get("CodeMeaning", "")).strip().lower()
    for key in (code, {"microvolt": "uv", "millivolt": "mv", "volt": "v"}.get(meaning.rstrip("s"), "")):
        if key in _TO_MILLIVOLT:
            return _TO_MILLIVOLT[key]
    raise EcgError(f"lead {name} has unknown sensitivity units {code or meaning!r} (expected uV or mV)")


def _complete_leads(leads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All twelve leads in display order, deriving missing limb leads from I and II (Einthoven, Goldberger)."""
    one, two = leads["I"], leads["II"]
    derived = {"III": two - one, "aVR": -(one + two) / 2, "aVL": one - two / 2, "aVF": two - one / 2}
    return {name: leads[name] if name in leads else derived[name] for name in LEADS}


def device_measurements(ds: Dataset) -> DeviceMeasurements:
    """The device's measurements and statements from the Waveform Annotation Sequence (PS3.3 C.10.10)."""
    found = DeviceMeasurements()
    for annotation in ds.get("WaveformAnnotationSequence", []):
        text = str(annotation.get("UnformattedTextValue", "")).strip()
        if text:
            found.texts.append(text)
            continue
        if annotation.get("NumericValue") in (None, "") or not annotation.get("ConceptNameCodeSequence"):
            continue
        concept = annotation.ConceptNameCodeSequence[0]
        name = _measurement_name(concept)
        if name is None or name in found.values:
            continue
        units = annotation.get("MeasurementUnitsCodeSequence")
        unit = str(units[0].get("CodeValue", "")) if units else ""
        canonical, factor = _UNITS.get(unit.strip().lower(), (unit, 1.0))
        found.values[name] = Quantity(float(annotation.NumericValue) * factor, canonical)
    return found


def _measurement_name(concept: Dataset) -> str | None:
    code = str(concept.get("CodeValue", "")).strip()
    if code in _MEASUREMENT_CODES:
        return _MEASUREMENT_CODES[code]
    meaning = " ".join(str(concept.get("CodeMeaning", "")).lower().split())
    return next((name for name, meanings in _MEASUREMENT_MEANINGS.items() if meaning in meanings), None)


def ecg_payload(
    ecg: Ecg, computed: Measurements | EcgMeasurement | None, max_rate: float = 500.0
) -> dict[str, Any]:
    """What the browser's ECG view loads: samples as integer microvolts per lead, and both sets of measurements.

    Recordings above ``max_rate`` are decimated by a whole factor (zero-phase
    anti-aliasing): 500 Hz is the diagnostic rate (AHA), and halves what a
    1000 Hz cart sends. Integers keep the JSON small (a 10 s, 500 Hz 12-lead
    is 60,000 numbers of a few digits each); 1 µV is far below what a reader
    can see. The computed measurements (fresh, or the stored row of
    :func:`viewer.ecg_measurements.computed_for`) are labelled with their source.
    """
    factor = max(1, int(ecg.sampling_frequency // max_rate))
    samples = np.vstack(list(ecg.leads.values()))
    if factor > 1:
        samples = signal.decimate(samples, factor, ftype="fir", axis=-1, zero_phase=True)
    microvolts = np.rint(samples * 1000.0).astype(np.int32)
    return {
        "sampling_frequency": ecg.sampling_frequency / factor,
        "duration_s": round(ecg.duration_s, 3),
        "units": "uV",
        "lead_order": list(ecg.leads),
        "samples": {name: row.tolist() for name, row in zip(ecg.leads, microvolts, strict=True)},
        "device": {"source": "device", **ecg.device.as_dict()},
        "computed": None if computed is None else {"source": "telerad", **computed.as_dict()},
    }
