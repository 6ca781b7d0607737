"""A loopback server speaking the part of the Hugging Face Hub's HTTP API that huggingface_hub's
snapshot_download uses, for `chartlight models` tests (huggingface_hub honours HF_ENDPOINT).

Learned from huggingface_hub 2.x (hf_api.repo_info / list_repo_tree, file_download.http_get /
get_hf_file_metadata, utils/_http.hf_raise_for_status):
- GET  /api/models/{repo}/revision/{rev}       repo info JSON; `sha` is the commit the revision names
- GET  /api/models/{repo}/tree/{rev}?recursive  a JSON list of {"type": "file", "path", "size",
  "oid"} (LFS files add "lfs": {"oid": sha256, "size", "pointerSize"})
- HEAD /{repo}/resolve/{rev}/{path}             headers only: X-Repo-Commit, ETag (the git blob id, or
  X-Linked-Etag = the sha256 for LFS files), X-Linked-Size, Content-Length
- GET  /{repo}/resolve/{rev}/{path}             the bytes; `Range: bytes=N-` answers 206
- errors carry X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo) and
  X-Error-Message, which huggingface_hub turns into its typed errors.
A gated repo answers 401 without a token and 403 to a token that has not accepted its terms, as
the Hub does; its info stays public.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tests.support.loopback import serving

LFS_SUFFIXES = (".safetensors", ".bin")


@dataclass
class HubRepo:
    files: dict[str, bytes]
    commit: str = "c0ffee" + "0" * 34
    gated: bool = False
    # Tokens of users who accepted a gated repo's terms.
    accepted_tokens: frozenset[str] = frozenset()

    @classmethod
    def from_folder(cls, folder: Path, **kwargs: object) -> HubRepo:
        files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return cls(files=files, **kwargs)  # type: ignore[arg-type]


@dataclass
class HubRequest:
    method: str
    path: str
    range: str | None
    authorization: str | None


@dataclass
class HubState:
    repos: dict[str, HubRepo]
    seen: list[HubRequest] = field(default_factory=list)
    # path in repo -> bytes to send of the first GET before the connection drops (a network cut).
    cut_after: dict[str, int] = field(default_factory=dict)

    def gets(self, name: str) -> list[HubRequest]:
        return [r for r in self.seen
                if r.method == "GET" and "/resolve/" in r.path and r.path.endswith("/" + name)]


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()  # git's id


def _handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._route(send_body=True)

        def do_HEAD(self) -> None:
            self._route(send_body=False)

        def _route(self, *, send_body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            state.seen.append(HubRequest(self.command, path, self.headers.get("Range"),
                                         self.headers.get("Authorization")))
            api = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
            tree = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)/?", path)
            resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            match = api or tree or resolve
            if match is None:
                return self._error(404, "EntryNotFound", "no such endpoint")
            repo = state.repos.get(match.group(1))
            if repo is None:
                return self._error(404 if self.headers.get("Authorization") else 401, "RepoNotFound",
                                   "Repository not found")
            revision = match.group(2) or "main"
            if revision not in ("main", repo.commit):
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            if api is not None:
                return self._json({"id": match.group(1), "modelId": match.group(1), "sha": repo.commit,
                                   "private": False, "gated": "manual" if repo.gated else False,
                                   "siblings": [{"rfilename": name} for name in repo.files]})
            if tree is not None:
                return self._json([_tree_entry(name, data) for name, data in repo.files.items()])
            if repo.gated and not self._accepted(repo, match.group(1)):
                return
            name = match.group(3)
            if name not in repo.files:
                return self._error(404, "EntryNotFound", f"{name} does not exist")
            self._file(repo, name, repo.files[name], send_body=send_body)

        def _accepted(self, repo: HubRepo, repo_id: str) -> bool:
            auth = self.headers.get("Authorization") or ""
            if not auth.startswith("Bearer "):
                self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have "
                            "access to it and be authenticated to access it. Please log in.")
                return False
            if auth.removeprefix("Bearer ") not in repo.accepted_tokens:
                self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted and you are not "
                            "in the authorized list.")
                return False
            return True

        def _file(self, repo: HubRepo, name: str, data: bytes, *, send_body: bool) -> None:
            start = 0
            wanted = self.headers.get("Range")
            if wanted:
                start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))  # type: ignore[union-attr]
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", repo.commit)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            if name.endswith(LFS_SUFFIXES):
                self.send_header("ETag", f'"{git_blob_id(_pointer(data))}"')
                self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Linked-Size", str(len(data)))
            else:
                self.send_header("ETag", f'"{git_blob_id(data)}"')
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if not send_body:
                return
            body = data[start:]
            cut = state.cut_after.pop(name, None) if self.command == "GET" else None
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # the network cut: fewer bytes than announced
                return
            self.wfile.write(body)

        def _json(self, value: object) -> None:
            body = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        def _error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

    return Handler


def _pointer(data: bytes) -> bytes:
    """The git-lfs pointer file the Hub's git holds for an LFS file."""
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            f"size {len(data)}\n").encode()


def _tree_entry(name: str, data: bytes) -> dict[str, object]:
    if name.endswith(LFS_SUFFIXES):
        pointer = _pointer(data)
        lfs = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": len(pointer)}
        return {"type": "file", "path": name, "size": len(data), "oid": git_blob_id(pointer), "lfs": lfs}
    return {"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)}


@contextmanager
def hub_server(state: HubState) -> Iterator[str]:
    """Serve `state` on 127.0.0.1; yields the endpoint (what HF_ENDPOINT would be set to)."""
    with serving(_handler(state)) as endpoint:
        yield endpoint
