"""Telerad's own 12-lead ECG measurements: rate, PR, QRS, QT, QTc and the frontal axes.

The readers see these beside the acquiring device's numbers, each labelled
with its source. The method is the one of interpretive electrocardiographs:
global measurements on a representative beat, taken over all leads at once
(IEC 60601-2-25 calls them global intervals), with physiological defaults only.

1. **Conditioning.** Each lead is high-passed at 0.5 Hz (zero-phase
   Butterworth) against baseline wander.
2. **QRS detection** (after Pan and Tompkins, 1985): the leads are band-passed
   at 5–20 Hz, differentiated, squared, summed over the leads and integrated
   over 100 ms; peaks at least 250 ms apart that reach 30% of the strong beats
   (the 90th percentile of all peaks) are QRS complexes, and an RR gap longer
   than 1.66 median RR is searched again at half that threshold.
3. **Representative beat.** A window around each beat (up to 400 ms before
   and 700 ms after) is aligned on a first QRS template by cross-correlation
   over all leads; beats whose QRS correlates under 0.9 with the template
   (ectopics) are left out, and the sample-wise median of the rest is the
   median beat of each lead.
4. **Global delineation** on the twelve median beats, low-passed at 40 Hz, so
   that the earliest onset and the latest offset in any lead count:

   - QRS onset and offset: where the *spatial velocity* (root of the summed
     squared slopes of the leads) stays under 5% of its QRS peak for 8 ms,
     before and after that peak;
   - T end: on the *spatial magnitude* (distance of the leads from their
     isoelectric level, the PR segment just before QRS onset), the
     trapezium-area method (Vázquez-Seisdedos et al., 2011) after the
     steepest fall that follows the T peak, with its reference point three
     times the peak-to-steepest distance further on (four widths of a
     bell-shaped T past its peak);
   - P onset: the same method backwards from the steepest rise of the most
     prominent hump of the spatial magnitude in the 350 ms before QRS onset
     (and after the previous beat's T end). A hump under 25 µV, or one the
     single beats do not share (weaker in the median than the beats' spread
     around it, as fibrillatory waves are), is no P wave: PR and the P axis
     are then ``None``, never a guess.
5. **Derived values.** Rate and RR from all detected beats; QTc by Bazett
   (QT/√RR) and Fridericia (QT/∛RR), RR in seconds; frontal axes from the net
   areas of the wave in leads I and aVF on the hexaxial system,
   ``atan2(2·aVF/√3, I)`` (aVF sees the frontal vector with gain √3/2).

The results are kept per instance in the ``ecg_measurements`` table
(:class:`EcgMeasurement`), written by :mod:`viewer.jobs` and read by the web
layer through :func:`computed_for`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

import numpy as np
from scipy import signal
from sqlalchemy import JSON, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from telerad import clock
from telerad.db import Base, BigId
from viewer.ecg import Ecg

ALGORITHM_VERSION = "telerad-ecg 1.0"

_HIGHPASS_HZ = 0.5
_DETECT_BAND_HZ = (5.0, 20.0)
_INTEGRATION_S = 0.100
_REFRACTORY_S = 0.250
_DETECT_FRACTION = 0.3
_PRE_S, _POST_S = 0.40, 0.70
_SIMILAR_BEAT = 0.90
_DELINEATE_LOWPASS_HZ = 40.0
_QRS_VELOCITY_FRACTION = 0.05
_QUIET_S = 0.008
_ISOELECTRIC_S = 0.010
_T_AFTER_QRS_S = 0.06  # the T peak is looked for from here after QRS offset ...
_QT_MAX_S = 0.60  # ... to here after QRS onset (or 90% of the RR interval)
_P_SEARCH_S = 0.350
_P_REFERENCE_S = 0.100
_P_MIN_MV = 0.025
_P_SHARED = 2.0  # power of the median P over the beats' mean spread from it


class MeasurementError(ValueError):
    """No beats could be found to measure (too short, flat or noisy)."""


@dataclass
class Measurements:
    """Telerad's measurements of one ECG; ``None`` wherever a value could not be determined."""

    heart_rate: float | None = None  # beats per minute
    rr_ms: float | None = None
    pr_ms: float | None = None
    qrs_ms: float | None = None
    qt_ms: float | None = None
    qtc_bazett_ms: float | None = None
    qtc_fridericia_ms: float | None = None
    p_axis: float | None = None  # degrees in the frontal plane, -180 to 180
    qrs_axis: float | None = None
    t_axis: float | None = None
    beats: int = 0  # QRS complexes detected
    beats_in_median: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: values rounded to whole units, with the algorithm version."""
        return {**_rounded(asdict(self)), "algorithm": ALGORITHM_VERSION}


@dataclass(frozen=True)
class MedianBeat:
    """The representative beat: one median per lead, and the aligned beats it was formed from."""

    leads: np.ndarray  # leads × samples
    beats: np.ndarray  # beats × leads × samples
    centre: int  # the QRS alignment point


@dataclass(frozen=True)
class Fiducials:
    """Global points of the median beat, in samples from its start; ``None`` where there is none."""

    p_onset: int | None
    qrs_onset: int
    qrs_offset: int
    t_end: int | None


def measure(ecg: Ecg) -> Measurements:
    """Measure ``ecg``; raises :class:`MeasurementError` when it has too few beats."""
    fs = ecg.sampling_frequency
    leads = highpass(np.vstack(list(ecg.leads.values())), fs)
    peaks = detect_qrs(leads, fs)
    if len(peaks) < 3:
        raise MeasurementError(f"only {len(peaks)} QRS complex(es) found in {ecg.duration_s:.1f} s")
    rr_s = float(np.mean(np.diff(peaks))) / fs
    beat = median_beat(leads, peaks, fs, rr_s)
    points = delineate(beat, fs, rr_s)
    result = Measurements(
        heart_rate=60.0 / rr_s, rr_ms=rr_s * 1000.0, beats=len(peaks), beats_in_median=len(beat.beats),
        qrs_ms=_ms(points.qrs_offset - points.qrs_onset, fs),
    )
    if points.p_onset is not None:
        result.pr_ms = _ms(points.qrs_onset - points.p_onset, fs)
    if points.t_end is not None:
        result.qt_ms = _ms(points.t_end - points.qrs_onset, fs)
        result.qtc_bazett_ms = result.qt_ms / rr_s ** (1 / 2)
        result.qtc_fridericia_ms = result.qt_ms / rr_s ** (1 / 3)
    _axes(result, list(ecg.leads), beat, points, fs)
    return result


def _ms(samples: int, fs: float) -> float:
    return samples * 1000.0 / fs


def highpass(values: np.ndarray, fs: float) -> np.ndarray:
    """``values`` (… × samples) without baseline wander: zero-phase Butterworth high-pass at 0.5 Hz."""
    sos = signal.butter(2, _HIGHPASS_HZ, btype="highpass", fs=fs, output="sos")
    return signal.sosfiltfilt(sos, values, axis=-1)


def _lowpass(values: np.ndarray, fs: float) -> np.ndarray:
    sos = signal.butter(2, min(_DELINEATE_LOWPASS_HZ, 0.45 * fs), btype="lowpass", fs=fs, output="sos")
    return signal.sosfiltfilt(sos, values, axis=-1)


def detect_qrs(leads: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices of the QRS complexes in ``leads`` (leads × samples), after Pan and Tompkins."""
    low, high = _DETECT_BAND_HZ
    sos = signal.butter(2, [low, min(high, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    energy = np.sum(np.gradient(signal.sosfiltfilt(sos, leads, axis=-1), axis=-1) ** 2, axis=0)
    width = max(1, round(_INTEGRATION_S * fs))
    integrated = np.convolve(energy, np.ones(width) / width, mode="same")
    candidates, found = signal.find_peaks(integrated, distance=max(1, round(_REFRACTORY_S * fs)), height=0.0)
    if len(candidates) == 0:
        return candidates
    heights = found["peak_heights"]
    threshold = _DETECT_FRACTION * np.percentile(heights, 90)
    return _search_back(candidates[heights >= threshold], candidates, heights, threshold / 2)


def _search_back(peaks: np.ndarray, candidates: np.ndarray, heights: np.ndarray, threshold: float) -> np.ndarray:
    """Add the strongest candidate inside each RR gap longer than 1.66 median RR (Pan–Tompkins search-back)."""
    if len(peaks) < 3:
        return peaks
    limit = 1.66 * np.median(np.diff(peaks))
    found = list(peaks)
    for start, end in zip(peaks[:-1], peaks[1:], strict=True):
        inside = (candidates > start + limit / 4) & (candidates < end - limit / 4) & (heights >= threshold)
        if end - start > limit and inside.any():
            found.append(candidates[inside][np.argmax(heights[inside])])
    return np.array(sorted(found))


def median_beat(leads: np.ndarray, peaks: np.ndarray, fs: float, rr_s: float) -> MedianBeat:
    """The median beat of ``leads`` (leads × samples) over the dominant beats at ``peaks``."""
    pre = round(min(_PRE_S, 0.6 * rr_s) * fs)
    post = round(min(_POST_S, 0.95 * rr_s) * fs)
    aligned = _align(leads, peaks, fs)
    aligned = aligned[(aligned - pre >= 0) & (aligned + post < leads.shape[1])]
    if len(aligned) < 2:
        raise MeasurementError("too few complete beats for a median beat")
    beats = np.stack([leads[:, p - pre : p + post] for p in aligned])
    template = np.median(beats, axis=0)
    qrs = slice(pre - round(0.06 * fs), pre + round(0.08 * fs))
    similar = np.array([_correlation(beat[:, qrs], template[:, qrs]) >= _SIMILAR_BEAT for beat in beats])
    chosen = beats[similar] if similar.sum() >= max(2, len(beats) // 3) else beats
    return MedianBeat(np.median(chosen, axis=0), chosen, pre)


def _align(leads: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray:
    """Each detection moved onto the QRS of a first median template by cross-correlation (±40 ms)."""
    half, shift = round(0.06 * fs), round(0.04 * fs)
    usable = peaks[(peaks - half - shift >= 0) & (peaks + half + shift < leads.shape[1])]
    if len(usable) == 0:
        return usable
    template = np.median(np.stack([leads[:, p - half : p + half] for p in usable]), axis=0)
    moved = []
    for p in usable:
        scores = [np.sum(leads[:, p + s - half : p + s + half] * template) for s in range(-shift, shift + 1)]
        moved.append(p + int(np.argmax(scores)) - shift)
    return np.array(moved)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    scale = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / scale if scale else 0.0


def delineate(beat: MedianBeat, fs: float, rr_s: float) -> Fiducials:
    """Global QRS onset and offset, P onset and T end of a median beat."""
    smooth = _lowpass(beat.leads, fs)
    qrs_onset, qrs_offset = _qrs_bounds(smooth, beat.centre, fs)
    magnitude = np.linalg.norm(smooth - _isoelectric(smooth, qrs_onset, fs)[:, None], axis=0)
    t_end = _t_end(magnitude, qrs_onset, qrs_offset, fs, rr_s)
    # The previous beat's T wave ended one RR interval before this one's: its P wave comes after that.
    after = 0 if t_end is None else max(0, t_end - round(rr_s * fs))
    p_onset = _p_onset(magnitude, qrs_onset, after, fs)
    if p_onset is not None and not _shared_by_beats(beat, fs, p_onset, qrs_onset):
        p_onset = None
    return Fiducials(p_onset, qrs_onset, qrs_offset, t_end)


def _qrs_bounds(smooth: np.ndarray, centre: int, fs: float) -> tuple[int, int]:
    """QRS onset and offset: where the spatial velocity stays under 5% of its QRS peak for 8 ms."""
    velocity = np.linalg.norm(np.gradient(smooth, axis=-1), axis=0)
    reach = round(0.08 * fs)
    peak = centre - reach + int(np.argmax(velocity[centre - reach : centre + reach]))
    below = velocity < _QRS_VELOCITY_FRACTION * velocity[peak]
    quiet = max(1, round(_QUIET_S * fs))
    onset = peak
    while onset > quiet and not below[onset - quiet : onset].all():
        onset -= 1
    offset = peak
    while offset < len(velocity) - quiet and not below[offset : offset + quiet].all():
        offset += 1
    return onset, offset


def _isoelectric(smooth: np.ndarray, qrs_onset: int, fs: float) -> np.ndarray:
    """Each lead's isoelectric level: its mean over the 10 ms before QRS onset (the PR segment)."""
    width = max(1, round(_ISOELECTRIC_S * fs))
    return smooth[:, max(0, qrs_onset - width) : qrs_onset + 1].mean(axis=1)


def _trapezium(values: np.ndarray, start: int, reference: int) -> int:
    """Where a wave ends, by the trapezium-area method, from its steepest point ``start`` towards ``reference``.

    The trapezium has corners at ``start``, the candidate, and ``reference`` on
    the candidate's level; its area is largest at the wave's end. A reference
    before ``start`` finds an onset.
    """
    step = 1 if reference >= start else -1
    points = np.arange(start, reference + step, step)
    area = (values[start] - values[points]) * (np.abs(reference - points) + abs(reference - start))
    return int(points[int(np.argmax(area))])


def _t_end(magnitude: np.ndarray, qrs_onset: int, qrs_offset: int, fs: float, rr_s: float) -> int | None:
    """T end: the trapezium-area method after the steepest fall that follows the T peak."""
    start = qrs_offset + round(_T_AFTER_QRS_S * fs)
    stop = min(len(magnitude) - 1, qrs_onset + round(min(_QT_MAX_S, 0.9 * rr_s) * fs))
    if stop - start < round(0.1 * fs):
        return None
    peak = start + int(np.argmax(magnitude[start:stop]))
    if stop - peak < 2:
        return None
    steepest = peak + int(np.argmin(np.gradient(magnitude)[peak:stop]))
    reference = min(len(magnitude) - 1, steepest + 3 * max(1, steepest - peak))
    return _trapezium(magnitude, steepest, reference)


def _p_onset(magnitude: np.ndarray, qrs_onset: int, after: int, fs: float) -> int | None:
    """P onset: the trapezium-area method before the steepest rise of the P hump; ``None`` without one."""
    earliest = max(after, qrs_onset - round(_P_SEARCH_S * fs))
    humps, found = signal.find_peaks(magnitude[earliest:qrs_onset], prominence=_P_MIN_MV)
    if len(humps) == 0:
        return None
    best = int(np.argmax(found["prominences"]))
    peak, rise_from = earliest + int(humps[best]), earliest + int(found["left_bases"][best])
    if peak - rise_from < 2:
        return None
    steepest = rise_from + int(np.argmax(np.gradient(magnitude)[rise_from:peak]))
    return _trapezium(magnitude, steepest, max(0, steepest - round(_P_REFERENCE_S * fs)))


def _shared_by_beats(beat: MedianBeat, fs: float, start: int, end: int) -> bool:
    """Whether the single beats share the median's wave between ``start`` and ``end`` (a P wave, not f waves).

    A shared wave carries at least twice the power in the median beat that the
    single beats differ from it by on average; fibrillatory waves, not locked
    to the QRS, leave a median weaker than their spread. Each lead is detrended
    first, so that the slow tail of a preceding T wave does not count.
    """
    median = signal.detrend(_lowpass(beat.leads, fs)[:, start:end], axis=-1)
    singles = signal.detrend(_lowpass(beat.beats, fs)[:, :, start:end], axis=-1)
    spread = float(np.mean(np.sum((singles - median) ** 2, axis=(1, 2))))
    return float(np.sum(median**2)) >= _P_SHARED * spread


def _axes(result: Measurements, names: list[str], beat: MedianBeat, points: Fiducials, fs: float) -> None:
    """Fill in the frontal P, QRS and T axes from the baseline-corrected leads I and aVF."""
    smooth = _lowpass(beat.leads, fs)
    corrected = smooth - _isoelectric(smooth, points.qrs_onset, fs)[:, None]
    lead_i, lead_avf = corrected[names.index("I")], corrected[names.index("aVF")]
    result.qrs_axis = frontal_axis(lead_i, lead_avf, points.qrs_onset, points.qrs_offset)
    if points.p_onset is not None:
        result.p_axis = frontal_axis(lead_i, lead_avf, points.p_onset, points.qrs_onset)
    if points.t_end is not None:
        result.t_axis = frontal_axis(lead_i, lead_avf, points.qrs_offset, points.t_end)


def frontal_axis(lead_i: np.ndarray, lead_avf: np.ndarray, start: int, end: int) -> float | None:
    """The frontal-plane axis in degrees (-180 to 180) of the wave between ``start`` and ``end``.

    From the net areas in lead I (0°) and aVF (+90°, gain √3/2 on the
    hexaxial system); ``None`` when the wave has no net area.
    """
    x = float(np.sum(lead_i[start:end]))
    y = float(np.sum(lead_avf[start:end])) * 2 / np.sqrt(3)
    if x == 0 and y == 0:
        return None
    return float(np.degrees(np.arctan2(y, x)))


#: The measured columns of :class:`EcgMeasurement`: the fields of :class:`Measurements`.
MEASURED = tuple(field.name for field in fields(Measurements))


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {name: round(value) if isinstance(value, float) else value for name, value in values.items()}


class EcgMeasurement(Base):
    """Telerad's measurements of one stored ECG instance (or why there are none: ``error``).

    ``sha256`` and ``algorithm`` say which version of the file was measured by
    which version of the method: the same pair again changes nothing.
    """

    __tablename__ = "ecg_measurements"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    algorithm: Mapped[str] = mapped_column(String(32))
    heart_rate: Mapped[float | None]
    rr_ms: Mapped[float | None]
    pr_ms: Mapped[float | None]
    qrs_ms: Mapped[float | None]
    qt_ms: Mapped[float | None]
    qtc_bazett_ms: Mapped[float | None]
    qtc_fridericia_ms: Mapped[float | None]
    p_axis: Mapped[float | None]
    qrs_axis: Mapped[float | None]
    t_axis: Mapped[float | None]
    beats: Mapped[int | None]
    beats_in_median: Mapped[int | None]
    device: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(String(400))
    computed_at: Mapped[datetime]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready like :meth:`Measurements.as_dict`, with the algorithm that ran, when, and any error."""
        values = _rounded({name: getattr(self, name) for name in MEASURED})
        return {**values, "algorithm": self.algorithm, "computed_at": self.computed_at.isoformat(), "error": self.error}


def computed_for(session: Session, sop_instance_uid: str) -> EcgMeasurement | None:
    """The stored measurement of an instance, if it has been measured (or tried)."""
    return session.scalar(select(EcgMeasurement).where(EcgMeasurement.sop_instance_uid == sop_instance_uid))


def store(
    session: Session, sop_instance_uid: str, study_uid: str, sha256: str,
    result: Measurements | None, device: dict[str, Any], error: str | None = None,
) -> EcgMeasurement:
    """Insert or replace the row of an instance within the caller's transaction."""
    row = computed_for(session, sop_instance_uid)
    if row is None:
        row = EcgMeasurement(sop_instance_uid=sop_instance_uid)
        session.add(row)
    row.study_uid, row.sha256, row.algorithm = study_uid, sha256, ALGORITHM_VERSION
    row.device, row.error, row.computed_at = device, error, clock.now()
    for name in MEASURED:
        setattr(row, name, None if result is None else getattr(result, name))
    return row
