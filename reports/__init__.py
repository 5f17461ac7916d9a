"""Reports: a study's report written from a template, signed, and delivered back to the station.

- ``models``: the tables — the report, its addenda and append-only signatures, signing keys, critical notices,
  deliveries;
- ``templates``: report templates as data files (``templates/*.yaml``, plus ``reports.templates_dir``), with
  structured fields, default text and reusable phrases;
- ``drafting``: the draft (prefilled, autosaved with revisions) and the states draft → preliminary → final →
  amended: sign, countersign, consult co-signature, addenda;
- ``keys``, ``canonical``, ``pdf``, ``signing``: readers' keys, the canonical form and its detached signature,
  the signed PDF, and ``telerad report verify``;
- ``critical``: critical findings told to the station, acknowledged, or escalated to the supervisors (``jobs``:
  the periodic escalation);
- ``fhir``: the report as a FHIR R4 DiagnosticReport;
- ``api``: the JSON API under ``/api/v1/studies/{study_uid}/report`` and ``/api/v1/report-templates``;
- ``dicom_document``, ``delivery``, ``delivery_jobs``: the Encapsulated PDF and Basic Text SR sent back to the
  station's DICOM node, and the webhook, with retries and a state per delivery;
- ``quality``, ``quality_jobs``, ``quality_api``: peer review (质控) of a random sample of final reports, scored
  on a RADPEER-like scale, a significant discrepancy told and answered by an addendum;
- ``scorecards``: each reader's volume, turnaround, peer-review agreement and addenda;
- ``monthly``: the county's monthly report for the province (PDF).

Who may write, sign, countersign, read and acknowledge is asked of :mod:`reading_queue.access`.
"""
