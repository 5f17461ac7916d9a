"""DICOM in and out: the DIMSE node, the storage area, the archive index (and later DICOMweb).

Knows nothing of the reading queue, the viewer or reports: it announces
``study.complete`` and ``study.updated`` through :mod:`telerad.events`.

- :mod:`pacs_node.storage` — ``FileStorage``: durable, content-addressed files
- :mod:`pacs_node.index` — patients, studies, series, instances, history, UID collisions
- :mod:`pacs_node.archive` — ``Archive.receive``: the one path every instance takes in
- :mod:`pacs_node.scp` — the pynetdicom AE and its event handlers
- :mod:`pacs_node.query`, :mod:`pacs_node.retrieve` — C-FIND, C-MOVE and C-GET
- :mod:`pacs_node.node` — receiver processes and housekeeping (``telerad dicom``)
- :mod:`pacs_node.dicomweb` — DICOMweb (PS3.18) under ``/dicomweb``: QIDO-RS, WADO-RS, STOW-RS
"""
