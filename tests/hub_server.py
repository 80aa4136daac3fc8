"""A fake Hugging Face Hub on 127.0.0.1 for push tests: the endpoints ``huggingface_hub`` (2.x) calls for
``whoami``, ``repo_info``, ``create_repo``, ``create_branch`` and ``upload_folder`` on the classic (non-Xet) path,
which it takes with ``HF_HUB_DISABLE_XET=1``:

    GET  /api/whoami-v2                                   who owns the token
    GET  /api/{models|datasets|spaces}/NS/NAME[/revision/REV]   repo info (404 RepoNotFound if missing)
    POST /api/repos/create                                {name, organization, type, visibility, sdk}
    POST /api/models/NS/NAME/branch/BRANCH                new branch from main (409 if it exists)
    POST /api/validate-yaml                               model card metadata check
    POST /api/{models|spaces}/NS/NAME/preupload/REV       per file: regular or LFS, and the stored oid
    POST /NS/NAME.git/info/lfs/objects/batch              LFS batch API: basic transfer, PUT to /lfs-storage/OID
    PUT  /lfs-storage/OID                                 the LFS object (sha256-checked)
    POST /api/{models|spaces}/NS/NAME/commit/REV          NDJSON: header, file (base64), lfsFile, deletedFile

Tests can inject failures per route (``fail("commit", 500, times=1)``), require a token (wrong token -> 401 as
the real Hub answers it), pre-create repos of other types, and read back what was committed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import yaml

REPO = r"(?P<repo>[^/]+/[^/]+)"
ROUTES = [  # (method, path regex, route name)
    ("GET", r"/api/whoami-v2", "whoami"),
    ("GET", rf"/api/(?P<kind>models|datasets|spaces)/{REPO}(?:/revision/(?P<rev>.+))?", "repo_info"),
    ("POST", r"/api/repos/create", "create"),
    ("POST", rf"/api/models/{REPO}/branch/(?P<branch>[^/]+)", "branch"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("POST", rf"/api/(?P<kind>models|spaces)/{REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"/{REPO}\.git/info/lfs/objects/batch", "lfs_batch"),
    ("PUT", r"/lfs-storage/(?P<oid>[0-9a-f]{64})", "lfs_upload"),
    ("POST", rf"/api/(?P<kind>models|spaces)/{REPO}/commit/(?P<rev>[^/]+)", "commit"),
]
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".png", ".gguf")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeRepo:
    repo_type: str
    private: bool = False
    sdk: str | None = None  # a Space's SDK, as create_repo sent it
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    heads: dict[str, str] = field(default_factory=lambda: {"main": "0" * 40})
    commits: list[dict] = field(default_factory=list)


@dataclass
class Failure:
    route: str  # a route name, or "*" for every route
    status: int
    remaining: int | None  # None: fail forever


class FakeHub:
    def __init__(self, token: str | None = None, user: str = "test-user"):
        self.token, self.user = token, user
        self.repos: dict[str, FakeRepo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []  # (route, path)
        self.leaks: list[str] = []  # routes whose URL or body carried the token
        self.validated_cards: list[str] = []
        self.failures: list[Failure] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- what tests set up and read back -----------------------------------------------------------------
    def fail(self, route: str, status: int = 500, times: int | None = 1) -> None:
        self.failures.append(Failure(route, status, times))

    def clear_failures(self) -> None:
        self.failures.clear()

    def add_repo(self, repo_id: str, repo_type: str = "model") -> None:
        self.repos[repo_id] = FakeRepo(repo_type)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id].branches[revision])

    def calls(self, route: str) -> int:
        return sum(1 for r, _ in self.requests if r == route)

    # --- request handling ----------------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers, body: bytes) -> tuple[int, dict, dict]:
        path = unquote(urlsplit(target).path)
        found = [(name, m) for verb, pattern, name in ROUTES if verb == method and (m := re.fullmatch(pattern, path))]
        if not found:
            return 404, {"error": f"fake hub: no route for {method} {path}"}, {}
        route, match = found[0]
        with self.lock:
            self.requests.append((route, path))
            if self.token and (self.token in target or self.token.encode() in body):
                self.leaks.append(route)
            for failure in self.failures:
                if failure.route in (route, "*") and failure.remaining != 0:
                    failure.remaining = None if failure.remaining is None else failure.remaining - 1
                    return failure.status, {"error": f"injected {failure.status}"}, {}
            if route != "lfs_upload" and self.token and headers.get("Authorization") != f"Bearer {self.token}":
                return 401, {"error": "Invalid credentials"}, {"X-Error-Message": "Invalid credentials in "
                                                                                  "Authorization header"}
            return getattr(self, f"_{route}")(body, **match.groupdict())

    def _missing_repo(self, repo_id: str, kind: str = "models"):
        repo = self.repos.get(repo_id)
        if repo is None or f"{repo.repo_type}s" != kind:
            return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        return None

    def _missing_revision(self, repo_id: str, rev: str):
        if rev not in self.repos[repo_id].branches:
            return 404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"}
        return None

    def _whoami(self, body):
        return 200, {"type": "user", "name": self.user}, {}

    def _repo_info(self, body, kind, repo, rev=None):
        error = self._missing_repo(repo, kind) or self._missing_revision(repo, rev or "main")
        if error:
            return error
        entry = self.repos[repo]
        files = entry.branches[rev or "main"]
        return 200, {"id": repo, "sha": entry.heads[rev or "main"], "private": entry.private,
                     "siblings": [{"rfilename": name} for name in sorted(files)]}, {}

    def _create(self, body):
        payload = json.loads(body)
        repo_id = f"{payload.get('organization') or self.user}/{payload['name']}"
        kind = payload.get("type") or "model"
        if repo_id in self.repos:
            return 409, {"error": f"You already created a {self.repos[repo_id].repo_type} repo named {repo_id}"}, {}
        self.repos[repo_id] = FakeRepo(kind, private=payload.get("visibility") == "private", sdk=payload.get("sdk"))
        prefix = "" if kind == "model" else f"{kind}s/"
        return 200, {"url": f"{self.url}/{prefix}{repo_id}", "name": repo_id}, {}

    def _branch(self, body, repo, branch):
        error = self._missing_repo(repo)
        if error:
            return error
        entry = self.repos[repo]
        if branch in entry.branches:
            return 409, {"error": "Reference already exists"}, {}
        entry.branches[branch] = dict(entry.branches["main"])
        entry.heads[branch] = entry.heads["main"]
        return 200, {}, {}

    def _validate_yaml(self, body):
        content = json.loads(body)["content"]
        self.validated_cards.append(content)
        match = re.match(r"---\n(.*?)\n---\n", content, re.S)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else None
        except yaml.YAMLError as err:
            return 400, {"errors": [{"message": f"invalid YAML: {err}"}], "warnings": []}, {}
        if not isinstance(metadata, dict):
            return 400, {"errors": [{"message": "no YAML metadata block"}], "warnings": []}, {}
        return 200, {"errors": [], "warnings": []}, {}

    def _preupload(self, body, kind, repo, rev):
        error = self._missing_repo(repo, kind) or self._missing_revision(repo, rev)
        if error:
            return error
        stored = self.repos[repo].branches[rev]
        answers = []
        for item in json.loads(body)["files"]:
            sample = base64.b64decode(item["sample"])
            lfs = item["path"].endswith(LFS_SUFFIXES) or item["size"] > 5_000_000 or b"\0" in sample
            old = stored.get(item["path"])
            oid = None if old is None else hashlib.sha256(old).hexdigest() if lfs else git_blob_sha1(old)
            answers.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular",
                            "shouldIgnore": False, "oid": oid})
        return 200, {"files": answers}, {}

    def _lfs_batch(self, body, repo):
        error = self._missing_repo(repo)
        if error:
            return error
        objects = []
        for obj in json.loads(body)["objects"]:
            answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.lfs:
                answer["actions"] = {"upload": {"href": f"{self.url}/lfs-storage/{obj['oid']}"}}
            objects.append(answer)
        return 200, {"transfer": "basic", "objects": objects}, {}

    def _lfs_upload(self, body, oid):
        if hashlib.sha256(body).hexdigest() != oid:
            return 400, {"error": "sha256 mismatch"}, {}
        self.lfs[oid] = body
        return 200, None, {}

    def _commit(self, body, kind, repo, rev):
        error = self._missing_repo(repo, kind) or self._missing_revision(repo, rev)
        if error:
            return error
        entry = self.repos[repo]
        files = dict(entry.branches[rev])
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        for line in lines:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.lfs:
                    return 422, {"error": f"LFS object {value['oid']} was never uploaded"}, {}
                files[value["path"]] = self.lfs[value["oid"]]
            elif line["key"] in ("deletedFile", "deletedFolder"):
                files = {p: d for p, d in files.items() if p != value["path"] and not p.startswith(value["path"])}
        oid = hashlib.sha1(f"{repo}@{rev}#{len(entry.commits)}".encode()).hexdigest()
        entry.branches[rev], entry.heads[rev] = files, oid
        entry.commits.append({"revision": rev, "oid": oid, "header": lines[0]["value"] if lines else {}})
        return 200, {"commitUrl": f"{self.url}/{repo}/commit/{oid}", "commitOid": oid, "success": True,
                     "pullRequestUrl": None}, {}


def _handler_class(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = bytearray()
                while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                    data += self.rfile.read(size)
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(data)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _serve(self) -> None:
            body = self._read_body()
            status, payload, extra = hub.handle(self.command, self.path, self.headers, body)
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, *args) -> None:  # keep test output clean
            pass

    return Handler
