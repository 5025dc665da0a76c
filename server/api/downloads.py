"""Node install from the server: `GET /install-agent.sh` and `GET /downloads/{path}`.

Both are public: a node that installs has no token yet. Nothing here has to be
trusted because of where it comes from: `install-agent.sh` checks the manifest's
signature against the release key it was given and every file against the manifest
(docs/install.md section 3). The server's own duty is narrower: hand out the files of
the installed release and nothing else. So, per request:

- the release directory is `AAMI_RELEASE_DIR`, default `/opt/aami/current` (the
  symlink install.sh switches); it is resolved once, so a request during an upgrade
  reads manifest and file from the same release;
- a path is served only if it is one of the three `MANIFEST.*` files or a path listed
  in that release's `MANIFEST.sha256` (exact string match: no normalisation that an
  attacker could steer; `..`, absolute and empty components are never listed);
- the file it names must resolve, symlinks followed, to a regular file inside the
  release directory (a listed path that is a symlink pointing out is refused);
- anything else is a 404 in the documented error shape, with no hint of what exists.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web

from aami import server
from aami.server.errors import NotFound
from aami.server.routing import PUBLIC, Call, Route

log = logging.getLogger(__name__)

RELEASE_DIR_ENV = "AAMI_RELEASE_DIR"
DEFAULT_RELEASE_DIR = "/opt/aami/current"
MANIFEST = "MANIFEST.sha256"
MANIFEST_FILES = (MANIFEST, "MANIFEST.sha256.sig", "MANIFEST.dsse.json")
INSTALLER = "install-agent.sh"
# The copy shipped with the program: packaging/ beside the component folders in the
# source tree, aami/packaging/ inside the PyInstaller binary (packaging/pyinstaller/common.py).
BUILTIN_INSTALLER = Path(server.__file__).resolve().parent.parent / "packaging" / INSTALLER
MAX_MANIFEST_BYTES = 1 << 20

_LINE = re.compile(r"^([0-9a-f]{64})  (.+)$")
_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9._+-]+$")


def release_dir(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get(RELEASE_DIR_ENV) or DEFAULT_RELEASE_DIR)


def is_safe_path(path: str) -> bool:
    """A relative path of plain components: no `..`, `.`, empty or absolute parts."""
    parts = path.split("/")
    return all(_SAFE_COMPONENT.match(p) and p not in (".", "..") for p in parts)


def listed_paths(manifest: str) -> set[str]:
    """The safe paths a manifest lists (`sha256sum` lines); anything else is ignored,
    since install.sh has refused such a release already."""
    listed = set()
    for line in manifest.splitlines():
        match = _LINE.match(line)
        if match and is_safe_path(match.group(2)):
            listed.add(match.group(2))
    return listed


def servable(path: str, listed: set[str]) -> bool:
    return path in MANIFEST_FILES or path in listed


def _read_manifest(root: Path) -> str | None:
    try:
        with open(root / MANIFEST, "rb") as handle:
            data = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_MANIFEST_BYTES:
        return None
    return data.decode("utf-8", errors="replace")


def locate(path: str, configured: Path) -> Path | None:
    """The file to serve for `path`, or None. Does blocking I/O on small files only
    (the manifest, a stat); the body is sent by FileResponse without blocking."""
    try:
        root = configured.resolve(strict=True)
    except OSError:
        return None
    manifest = _read_manifest(root)
    if manifest is None or not servable(path, listed_paths(manifest)):
        return None
    try:
        target = (root / path).resolve(strict=True)
    except OSError:
        return None
    if root not in target.parents or not target.is_file():
        return None
    return target


def _file_reply(target: Path, content_type: str) -> web.FileResponse:
    # The same URL serves the next release after an upgrade: caches must revalidate.
    return web.FileResponse(target, headers={"Content-Type": content_type,
                                             "Cache-Control": "no-cache"})


async def download(call: Call) -> web.StreamResponse:
    path = call.path["path"]
    configured = release_dir()
    target = locate(path, configured)
    if target is None:
        if not configured.exists():
            log.warning("GET /downloads/%s: no installed release at %s (set %s)",
                        path, configured, RELEASE_DIR_ENV)
        raise NotFound("no such file in the installed release")
    return _file_reply(target, "application/octet-stream")


async def install_agent(call: Call) -> web.StreamResponse:
    # The installed release's copy first: it matches the binaries served next to it.
    target = locate(INSTALLER, release_dir())
    if target is None and BUILTIN_INSTALLER.is_file():
        target = BUILTIN_INSTALLER
    if target is None:
        raise NotFound("install-agent.sh is not available on this server")
    return _file_reply(target, "text/x-shellscript; charset=utf-8")


_PATH = {"path": {"type": "string", "minLength": 1, "maxLength": 1024}}
_DOWNLOAD_SUMMARY = ("A file of the installed release: MANIFEST.sha256, MANIFEST.sha256.sig, "
                     "MANIFEST.dsse.json or a path the manifest lists (bin/aami-agent, ...). "
                     "Public; the installer verifies everything against the signed manifest.")

ROUTES = [
    Route("GET", "/install-agent.sh", install_agent,
          "The node installer (curl -fsSL SERVER/install-agent.sh | bash -s -- ...)",
          PUBLIC, "downloads", responses={200: None},
          response_media={200: "text/x-shellscript"}),
    Route("GET", "/downloads/{path}", download, _DOWNLOAD_SUMMARY, PUBLIC, "downloads",
          path_params=_PATH, responses={200: None},
          response_media={200: "application/octet-stream"}),
    # The same handler for paths with slashes (bin/aami-agent). OpenAPI path parameters
    # cannot span segments, so this twin stays out of the document; aiohttp lists both
    # under the canonical /downloads/{path}.
    Route("GET", "/downloads/{path:.+}", download, _DOWNLOAD_SUMMARY, PUBLIC, "downloads",
          path_params=_PATH, responses={200: None},
          response_media={200: "application/octet-stream"}, in_openapi=False),
]
