"""The web front: pages, server-side image rendering and the 12-lead ECG view.

- :mod:`viewer.pages` — signing in and out, each role's home
- :mod:`viewer.worklist` — the readers' and supervisors' worklist page
- :mod:`viewer.station` — a station's studies, their status and reports; browser upload (STOW-RS)
- :mod:`viewer.study` — the study viewer (CT, CR, DX, ECG) and the data and images it loads
- :mod:`viewer.rendering` — pixels to JPEG/PNG/WebP with numpy and Pillow
- :mod:`viewer.ecg`, :mod:`viewer.ecg_measurements`, :mod:`viewer.jobs` — the ECG waveform and Telerad's own measurements
- :mod:`viewer.dashboard` — the supervisors' dashboard: live board, turnaround, scorecards, actions, exports
- :mod:`viewer.charts`, :mod:`viewer.export` — its SVG charts, and its tables as CSV and Excel
- :mod:`viewer.quality` — the peer reviewer's pages
- :mod:`viewer.i18n` — Chinese by default, English on request
"""
