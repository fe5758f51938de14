"""A small Hugging Face Hub for tests: the endpoints huggingface_hub calls to download a model repo.

- `GET /api/models/ORG/NAME[/revision/REV]`: repo info with `sha` and `siblings` (sizes with `?blobs=true`)
- `GET /api/models/ORG/NAME/tree/REV[/PATH]`: the recursive file listing (snapshot_download 1.x and later)
- `HEAD|GET /ORG/NAME/resolve/REV/FILE`: the file, with `X-Repo-Commit`, `ETag`, `X-Linked-Etag` and
  `X-Linked-Size` for the large files, and `Range` requests answered with 206 (huggingface_hub resumes
  a dropped transfer with them)

Errors carry the `X-Error-Code` header the Hub sends (RepoNotFound, RevisionNotFound, EntryNotFound,
GatedRepo), which huggingface_hub turns into its exceptions. `drop()` makes the next transfer of a file
stop after some bytes (the connection is closed mid-body), then either fail with 503 or resume.
`served` sends other bytes for a file than the ones its listing (sha256) describes, as a bad mirror would.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".gguf")


def commit_sha(files: dict[str, bytes], salt: str = "") -> str:
    digest = hashlib.sha1(salt.encode())
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


@dataclass
class Drop:
    """The next GET of a file sends `after` bytes and closes; later GETs fail with `then` (or resume if 0)."""

    after: int
    then: int = 503
    dropped: bool = False


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None


class _Server(ThreadingHTTPServer):
    """Keeps its open connections, so that stopping also ends the keep-alive ones clients hold."""

    daemon_threads = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.open: set[socket.socket] = set()

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = super().get_request()
        self.open.add(sock)
        return sock, address

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        self.open.discard(request)
        super().shutdown_request(request)


class FakeHub:
    """Repos in memory, served on 127.0.0.1 from a background thread."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.drops: dict[str, Drop] = {}
        self.served: dict[str, bytes] = {}  # file name -> bytes sent instead of the listed ones
        self.requests: list[Request] = []
        self.unhandled: list[str] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- content ---------------------------------------------------------------------------------

    def add(self, repo_id: str, files: dict[str, bytes], branch: str = "main", gated: bool = False) -> str:
        """Commit `files` to `repo_id` on `branch`; return the commit sha."""
        repo = self.repos.setdefault(repo_id, Repo())
        repo.gated = repo.gated or gated
        sha = commit_sha(files, salt=f"{repo_id}:{len(repo.commits)}")
        repo.commits[sha] = dict(files)
        repo.refs[branch] = sha
        return sha

    def drop(self, filename: str, after: int, then: int = 503) -> Drop:
        self.drops[filename] = Drop(after, then)
        return self.drops[filename]

    # -- serving ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            for sock in list(self._server.open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def log(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def resolve(self, repo_id: str, revision: str) -> tuple[Repo | None, str | None]:
        repo = self.repos.get(repo_id)
        if repo is None:
            return None, None
        if revision in repo.refs:
            return repo, repo.refs[revision]
        return repo, revision if revision in repo.commits else None


def _etag(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _git_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    # -- plumbing ------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, data: object, status: int = 200, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self._send(status, body, {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self._json(
            {"error": message}, status, {"X-Error-Code": code, "X-Error-Message": message, **(headers or {})}
        )

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        split = urlsplit(self.path)
        raw = [p for p in split.path.split("/") if p]
        self.hub.log(Request(self.command, split.path, self.headers.get("Range")))
        if len(raw) >= 3 and raw[:2] == ["api", "models"]:
            return self._api([unquote(p) for p in raw[2:]], parse_qs(split.query))
        if len(raw) >= 5 and raw[2] == "resolve":
            return self._file(
                f"{unquote(raw[0])}/{unquote(raw[1])}", unquote(raw[3]), unquote("/".join(raw[4:]))
            )
        self.hub.unhandled.append(f"{self.command} {self.path}")
        self._error(404, "NotFound", f"no route for {split.path}")

    # -- /api/models -----------------------------------------------------------------------------

    def _api(self, parts: list[str], query: dict[str, list[str]]) -> None:
        repo_id = "/".join(parts[:2])
        rest = parts[2:]
        revision = "main"
        if rest[:1] in (["revision"], ["tree"]) and len(rest) >= 2:
            revision = rest[1]
        elif rest:
            self.hub.unhandled.append(f"{self.command} {self.path}")
            return self._error(404, "NotFound", f"no route for {self.path}")
        repo, commit = self.hub.resolve(repo_id, revision)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        files = repo.commits[commit]
        if rest[:1] == ["tree"]:
            prefix = "/".join(rest[2:])
            entries = [self._entry(n, c) for n, c in sorted(files.items()) if n.startswith(prefix)]
            return self._json(entries)
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for name, content in sorted(files.items()):
            sibling: dict[str, object] = {"rfilename": name}
            if blobs:
                sibling |= {"size": len(content), "blobId": _git_oid(content)}
                if name.endswith(LFS_SUFFIXES):
                    sibling["lfs"] = {"sha256": _etag(content), "size": len(content), "pointerSize": 134}
            siblings.append(sibling)
        info = {
            "_id": commit[:24],
            "id": repo_id,
            "modelId": repo_id,
            "sha": commit,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "tags": ["safetensors"],
            "siblings": siblings,
            "lastModified": "2025-01-01T00:00:00.000Z",
            "createdAt": "2025-01-01T00:00:00.000Z",
        }
        self._json(info)

    @staticmethod
    def _entry(name: str, content: bytes) -> dict[str, object]:
        entry: dict[str, object] = {
            "type": "file",
            "path": name,
            "size": len(content),
            "oid": _git_oid(content),
        }
        if name.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"oid": _etag(content), "size": len(content), "pointerSize": 134}
        return entry

    # -- /ORG/NAME/resolve/REV/FILE --------------------------------------------------------------

    def _file(self, repo_id: str, revision: str, filename: str) -> None:
        repo, commit = self.hub.resolve(repo_id, revision)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        if repo.gated:
            return self._error(401, "GatedRepo", "Access to this model is restricted")
        files = repo.commits[commit]
        if filename not in files:
            return self._error(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit})
        content = files[filename]
        listed = content
        content = self.hub.served.get(filename, content)
        headers = {
            "X-Repo-Commit": commit,
            "ETag": f'"{_git_oid(content)}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if filename.endswith(LFS_SUFFIXES):
            headers |= {"X-Linked-Etag": f'"{_etag(listed)}"', "X-Linked-Size": str(len(content))}
        if self.command == "HEAD":
            return self._send(200, content, headers)
        drop = self.hub.drops.get(filename)
        if drop is not None:
            if not drop.dropped:
                drop.dropped = True
                return self._drop(content, headers, drop.after)
            if drop.then:
                return self._error(drop.then, "Unavailable", "Service temporarily unavailable")
        start = 0
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith("bytes="):
            first = wanted.removeprefix("bytes=").split("-", 1)[0]
            start = int(first or 0)
            if start >= len(content):
                return self._send(416, b"", {"Content-Range": f"bytes */{len(content)}"})
            headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
            return self._send(206, content[start:], headers)
        self._send(200, content, headers)

    def _drop(self, content: bytes, headers: dict[str, str], after: int) -> None:
        """Promise the whole file, send `after` bytes of it, and close the connection."""
        self.send_response(200)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content[:after])
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client may have gone already
            self.connection.shutdown(socket.SHUT_RDWR)
