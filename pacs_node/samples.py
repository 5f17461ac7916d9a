"""Sample studies for a new installation: real files from the pydicom and pydicom-data packages.

Each arrives as if its station had sent it (the same receiving path as
C-STORE), so a newcomer sees a CT, a 12-lead ECG and a chest X-ray move
through the worklist. Loading twice changes nothing (same UIDs, same bytes).
"""

from __future__ import annotations

from pathlib import Path

from pydicom.data import get_testdata_file
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from pacs_node.archive import Archive
from pacs_node.index import Outcome, Study
from pacs_node.node import load_senders, storage_for
from telerad.config import Config

#: (file in pydicom's or pydicom-data's test files, the demo AE title that sends it)
SAMPLES = (
    ("CT_small.dcm", "DG_CT"),
    ("waveform_ecg.dcm", "LIJIA_ECG"),
    ("RG1_UNCR.dcm", "ZZ_DR"),
)


def load_samples(config: Config, sessions: sessionmaker) -> int:
    """Store the sample studies if the archive is empty and their stations exist; returns how many were new."""
    with sessions() as session:
        if session.scalar(select(func.count()).select_from(Study)):
            return 0
    senders = load_senders(sessions)
    archive = Archive(storage_for(config), sessions)
    stored = 0
    for name, ae_title in SAMPLES:
        if ae_title not in senders:
            continue
        data = Path(get_testdata_file(name)).read_bytes()
        stored += archive.receive(data, senders[ae_title]) == Outcome.STORED
    return stored
