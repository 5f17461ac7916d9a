"""Making test instances from real files, and sending them the way a station would."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, _config
from pynetdicom.presentation import build_context

from conftest import tool


def copy_with_new_uids(source: Path, folder: Path, name: str | None = None, **changes: object) -> Path:
    """Write ``source`` to ``folder`` with fresh Study/Series/SOP Instance UIDs and ``changes`` applied."""
    ds = dcmread(source)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    if "SOPClassUID" in changes:
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{ds.SOPInstanceUID}.dcm")
    ds.save_as(path, enforce_file_format=True)
    return path


def series_from(sources: Iterable[Path], folder: Path, count: int) -> list[Path]:
    """``count`` instances of one new study and series, cycling over the real ``sources``."""
    sources = list(sources)
    study, series = generate_uid(), generate_uid()
    return [
        copy_with_new_uids(
            sources[number % len(sources)], folder, f"{number:04d}.dcm",
            InstanceNumber=number + 1, StudyInstanceUID=study, SeriesInstanceUID=series,
        )
        for number in range(count)
    ]


def storescu(port: int, calling_ae: str, paths: Iterable[Path], *extra: str) -> subprocess.CompletedProcess[str]:
    """Send files with dcmtk's storescu in one association."""
    return subprocess.run(
        [tool("storescu"), "-aet", calling_ae, "-aec", "TELERAD", *extra, "127.0.0.1", str(port), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def send(port: int, calling_ae: str, *items: Dataset | Path) -> list[Dataset]:
    """Send datasets or files with pynetdicom, each in its own transfer syntax; returns the status datasets.

    Files are streamed as they are on disk (pynetdicom's chunked sending), so the
    dataset bytes on the wire are exactly the file's.
    """
    contexts = []
    for item in items:
        if isinstance(item, Path):
            meta = read_file_meta_info(item)
            context = build_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
        else:
            context = build_context(item.SOPClassUID, item.file_meta.TransferSyntaxUID)
        if all((c.abstract_syntax, c.transfer_syntax) != (context.abstract_syntax, context.transfer_syntax) for c in contexts):
            contexts.append(context)
    ae = AE(ae_title=calling_ae)
    ae.requested_contexts = contexts
    assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD")
    assert assoc.is_established, "association was not established"
    chunked, _config.STORE_SEND_CHUNKED_DATASET = _config.STORE_SEND_CHUNKED_DATASET, True
    try:
        return [assoc.send_c_store(item) for item in items]
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = chunked
        assoc.release()
