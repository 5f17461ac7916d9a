"""The OHIF Viewer 3 (https://ohif.org), served from Telerad's own origin under ``/ohif/``.

OHIF is a zero-footprint DICOMweb viewer shipped as a prebuilt single-page
application: ``scripts/fetch-ohif`` puts the ``dist`` folder of the npm package
``@ohif/app`` in ``var/ohif``, and ``web.ohif_dir`` names the folder. Because
the viewer comes from our origin, its DICOMweb (PS3.18) calls to ``/dicomweb``
carry the browser's session cookie: the same sign-in and the same access rules
apply (a station sees only its own studies) — no CORS, no token in the page.
Every path under ``/ohif/`` needs a signed-in user.

The dist is built for the site root: ``window.PUBLIC_URL="/"`` and absolute
paths in ``index.html``, and webpack's public path compiled in as ``"/"`` in
the app bundle and in every worker bundle (it does not follow ``PUBLIC_URL``;
lazy chunks, workers and wasm decoders are all found through it). So a few
files are rewritten as they are served, once per file and process:

- ``index.html``: ``PUBLIC_URL`` and every ``href="/…"`` and ``src="/…"``;
- ``*.js``: ``__webpack_require__.p = "/"`` and the microscopy viewer's import path;
- ``*.css``: ``url(/…)`` (the font);
- ``manifest.json``: the icon paths.

``app-config.js`` is generated instead of the dist's (one DICOMweb data source
on this origin, the router under ``/ohif``), paths that are not files get
``index.html`` (the application's own routes, e.g. ``/ohif/viewer``), files
with a content hash in their name are cached for a year, and text files are
sent gzip-compressed to browsers that take it.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, request, send_file
from flask_login import current_user
from werkzeug.security import safe_join

from telerad.auth import login_manager

PREFIX = "/ohif"
DICOMWEB = "/dicomweb"
YEAR = 365 * 24 * 3600

ohif = Blueprint("ohif", __name__, url_prefix=PREFIX)

_HASHED = re.compile(r"(^|\.)[0-9a-f]{16}\.")  # rspack's [contenthash] in a file name
_ASSET = re.compile(r"\.[A-Za-z][A-Za-z0-9]*$")  # a file extension (a UID's last part is digits)
_COMPRESSIBLE = frozenset({".js", ".css", ".html", ".json", ".wasm", ".svg", ".map"})
_ROOT_ATTRIBUTE = re.compile(rb'\b(href|src)="/(?!/)')

Rewrite = Callable[[bytes], bytes]


def _index_html(data: bytes) -> bytes:
    data = data.replace(b'window.PUBLIC_URL="/"', f'window.PUBLIC_URL="{PREFIX}/"'.encode())
    return _ROOT_ATTRIBUTE.sub(rb'\1="' + PREFIX.encode() + b"/", data)


def _bundle(data: bytes) -> bytes:
    return data.replace(
        b'__webpack_require__.p = "/";', f'__webpack_require__.p = "{PREFIX}/";'.encode()
    ).replace(b"'/dicom-microscopy-viewer/", f"'{PREFIX}/dicom-microscopy-viewer/".encode())


def _stylesheet(data: bytes) -> bytes:
    return data.replace(b"url(/", f"url({PREFIX}/".encode())


def _manifest(data: bytes) -> bytes:
    return data.replace(b'"src": "/', f'"src": "{PREFIX}/'.encode())


def _rewrite_for(path: Path) -> Rewrite | None:
    if path.name == "index.html":
        return _index_html
    if path.name == "manifest.json":
        return _manifest
    return {".js": _bundle, ".css": _stylesheet}.get(path.suffix)


@lru_cache(maxsize=256)
def _body(path: Path, stamp: tuple[int, int], compressed: bool) -> bytes | None:
    """The file as served (rewritten, perhaps compressed), or ``None`` when it goes out as it is on disk."""
    rewrite = _rewrite_for(path)
    if rewrite is None and not compressed:
        return None
    data = path.read_bytes()
    served = rewrite(data) if rewrite else data
    if compressed:
        return gzip.compress(served, compresslevel=6, mtime=0)
    return served if served != data else None


def _dist() -> Path:
    folder = current_app.extensions["telerad.config"].web.ohif_dir
    if folder is None or not (folder / "index.html").is_file():
        abort(404, description="OHIF is not installed: run scripts/fetch-ohif and set web.ohif_dir")
    return folder.resolve()


def _send(path: Path) -> Response:
    """A file of the dist, rewritten where it must be, with its caching headers."""
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    compressed = path.suffix in _COMPRESSIBLE and "gzip" in request.accept_encodings
    body = _body(path, stamp, compressed)
    if body is None:
        response = send_file(path, conditional=True, max_age=None)
    else:
        response = Response(body, mimetype=_mimetype(path))
        if compressed:
            response.headers["Content-Encoding"] = "gzip"
        response.set_etag(f"{stamp[0]:x}-{stamp[1]:x}{'-gz' if compressed else ''}")
        response.last_modified = stat.st_mtime
        response.make_conditional(request)
    if path.suffix in _COMPRESSIBLE:
        response.vary.add("Accept-Encoding")
    if _HASHED.search(path.name):
        response.headers["Cache-Control"] = f"max-age={YEAR}, immutable"
    else:
        response.headers["Cache-Control"] = "no-cache"
    return response


def _mimetype(path: Path) -> str:
    return {
        ".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".json": "application/json",
        ".wasm": "application/wasm", ".svg": "image/svg+xml", ".map": "application/json",
    }.get(path.suffix, "application/octet-stream")


def app_config() -> str:
    """OHIF's ``window.config``: one DICOMweb data source at ``/dicomweb`` on the page's own origin."""
    config = {
        "routerBasename": PREFIX,
        "showStudyList": True,
        "investigationalUseDialog": {"option": "never"},
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "maxNumberOfWebWorkers": 3,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "groupEnabledModesFirst": True,
        "maxNumRequests": {"interaction": 100, "thumbnail": 5, "prefetch": 25},
        "showErrorDetails": "dev",
        "defaultDataSourceName": "telerad",
        "dataSources": [{
            "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
            "sourceName": "telerad",
            "configuration": {
                "friendlyName": "Telerad",
                "name": "telerad",
                "qidoSupportsIncludeField": True,
                "imageRendering": "wadors",
                "thumbnailRendering": "wadors",
                "enableStudyLazyLoad": True,
                "supportsFuzzyMatching": False,
                "supportsWildcard": True,
                "staticWado": False,
                "dicomUploadEnabled": False,
                "omitQuotationForMultipartRequest": True,
                "bulkDataURI": {"enabled": True},
            },
        }],
    }
    return (
        "// Generated by Telerad (viewer/ohif.py): DICOMweb on this origin, authenticated by the session cookie.\n"
        f"window.config = {json.dumps(config, indent=2)};\n"
        "(function (source) {\n"
        f'  source.qidoRoot = source.wadoRoot = source.wadoUriRoot = window.location.origin + "{DICOMWEB}";\n'
        "})(window.config.dataSources[0].configuration);\n"
    )


@ohif.before_request
def _signed_in() -> Response | None:
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


@ohif.after_request
def _isolated(response: Response) -> Response:
    # Cross-origin isolation lets the viewer use SharedArrayBuffer (volume viewports); everything is same-origin.
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    response.headers.setdefault("Cross-Origin-Embedder-Policy", "require-corp")
    return response


@ohif.get("/app-config.js")
def config_script() -> Response:
    """The generated OHIF configuration."""
    _dist()
    response = Response(app_config(), mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-cache"
    return response


@ohif.get("/", defaults={"subpath": ""})
@ohif.get("/<path:subpath>")
def asset(subpath: str) -> Response:
    """A file of the dist, or ``index.html`` for the application's own routes."""
    dist = _dist()
    found = safe_join(str(dist), subpath) if subpath else None
    if found is not None and Path(found).is_file():
        return _send(Path(found))
    if _ASSET.search(subpath.rsplit("/", 1)[-1]):
        abort(404)
    return _send(dist / "index.html")
