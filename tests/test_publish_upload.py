"""`isotune publish` against a small Hub-compatible HTTP server on 127.0.0.1, with the real huggingface_hub client.

The server implements what `HfApi.create_repo`, `repo_info`, `list_repo_files`, `create_branch` and
`create_commit` call: repository and revision info, the file tree, branch creation, README validation, the
preupload endpoint, the LFS batch endpoint with basic PUT transfers, and the NDJSON commit endpoint. Like
the Hub, it requests *.safetensors files as LFS and the rest as regular files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from huggingface_hub import constants

from isotune.cli import main
from isotune.errors import PublishError
from isotune.publish.workflow import PublishOptions, publish_run
from test_publish_card import FAKE_TOKEN, build_run_folder, snapshot

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
MAX_BODY_BYTES = 256 << 20


@dataclass
class Branch:
    sha: str
    files: dict[str, bytes]


@dataclass
class Repo:
    private: bool
    branches: dict[str, Branch]


@dataclass
class HubState:
    """Repositories, LFS objects and a log of requests, shared by the handler threads under `lock`."""

    token: str
    base_url: str = ""
    repos: dict[str, Repo] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    commits: int = 0
    lfs_uploads: int = 0
    fail_commits: int = 0
    reject_lfs_uploads: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_sha(self) -> str:
        self.commits += 1
        return hashlib.sha1(f"commit-{self.commits}".encode()).hexdigest()

    def add_repo(self, repo_id: str, files: dict[str, bytes], private: bool = False) -> None:
        self.repos[repo_id] = Repo(
            private, {"main": Branch(self.new_sha(), {".gitattributes": GITATTRIBUTES, **files})}
        )


class HubHandler(BaseHTTPRequestHandler):
    """Serves the Hub endpoints that a publish uses; any other path gets a 404."""

    server: ThreadingHTTPServer
    routes = [
        ("POST", r"/api/repos/create", "create_repo"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("GET", r"/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?", "repo_info"),
        ("GET", r"/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)", "tree"),
        ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/branch/(?P<rev>[^/]+)", "create_branch"),
        ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>[^/]+)", "preupload"),
        ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>[^/]+)", "commit"),
        ("POST", r"/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch", "lfs_batch"),
        ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", "lfs_put"),
    ]

    @property
    def state(self) -> HubState:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the name is fixed by http.server
        return

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        path = urlparse(self.path).path
        with self.state.lock:
            self.state.requests.append((method, path))
        for route_method, pattern, name in self.routes:
            match = re.fullmatch(pattern, path)
            if route_method == method and match:
                if name != "lfs_put" and self.headers.get("Authorization") != f"Bearer {self.state.token}":
                    self._send(
                        401,
                        {"error": "Invalid credentials"},
                        error_message="Invalid credentials in Authorization header",
                    )
                    return
                params = {key: unquote(value) for key, value in match.groupdict().items() if value is not None}
                body = self._read_body()
                with self.state.lock:
                    getattr(self, name)(body, **params)
                return
        self._send(404, {"error": f"no route for {method} {path}"})

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            chunks, total = [], 0
            while total <= MAX_BODY_BYTES:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
                total += size
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length", 0))
        return self.rfile.read(min(length, MAX_BODY_BYTES))

    def _send(self, status: int, payload: object, error_code: str | None = None, error_message: str | None = None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if error_code:
            self.send_header("X-Error-Code", error_code)
        if error_message:
            self.send_header("X-Error-Message", error_message)
        self.end_headers()
        self.wfile.write(data)

    def _branch(self, repo_id: str, rev: str) -> Branch | None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._send(404, {"error": "Repository not found"}, error_code="RepoNotFound")
            return None
        if rev not in repo.branches:
            self._send(404, {"error": "Invalid rev id"}, error_code="RevisionNotFound")
            return None
        return repo.branches[rev]

    def create_repo(self, body: bytes) -> None:
        request = json.loads(body)
        repo_id = f"{request['organization']}/{request['name']}"
        if repo_id in self.state.repos:
            self._send(409, {"error": "You already created this model repo", "url": f"{self.state.base_url}/{repo_id}"})
            return
        self.state.add_repo(repo_id, {}, private=request.get("visibility") == "private")
        self._send(200, {"url": f"{self.state.base_url}/{repo_id}", "name": repo_id})

    def validate_yaml(self, body: bytes) -> None:
        content = json.loads(body)["content"]
        valid = content.startswith("---\n") and "\nlicense: " in content
        self._send(
            200 if valid else 400, {"errors": [] if valid else [{"message": "license is required"}], "warnings": []}
        )

    def repo_info(self, body: bytes, repo: str, rev: str = "main") -> None:
        branch = self._branch(repo, rev)
        if branch is not None:
            siblings = [{"rfilename": path} for path in sorted(branch.files)]
            self._send(
                200, {"id": repo, "sha": branch.sha, "private": self.state.repos[repo].private, "siblings": siblings}
            )

    def tree(self, body: bytes, repo: str, rev: str) -> None:
        branch = self._branch(repo, rev)
        if branch is not None:
            entries = [
                {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                for path, data in sorted(branch.files.items())
            ]
            self._send(200, entries)

    def create_branch(self, body: bytes, repo: str, rev: str) -> None:
        start = self._branch(repo, json.loads(body or b"{}").get("startingPoint", "main"))
        if start is None:
            return
        if rev in self.state.repos[repo].branches:
            self._send(409, {"error": "Reference already exists"})
            return
        self.state.repos[repo].branches[rev] = Branch(start.sha, dict(start.files))
        self._send(200, {})

    def preupload(self, body: bytes, repo: str, rev: str) -> None:
        if self._branch(repo, rev) is None:
            return
        files = [
            {
                "path": item["path"],
                "uploadMode": "lfs" if item["path"].endswith(".safetensors") else "regular",
                "shouldIgnore": False,
            }
            for item in json.loads(body)["files"]
        ]
        self._send(200, {"files": files, "commitOid": self.state.repos[repo].branches[rev].sha})

    def lfs_batch(self, body: bytes, repo: str) -> None:
        objects = []
        for item in json.loads(body)["objects"]:
            entry = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if item["oid"] not in self.state.lfs_objects:
                entry["actions"] = {"upload": {"href": f"{self.state.base_url}/lfs-upload/{item['oid']}"}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects})

    def lfs_put(self, body: bytes, oid: str) -> None:
        if self.state.reject_lfs_uploads:
            self._send(403, {"error": "Upload URL expired"})
            return
        if hashlib.sha256(body).hexdigest() != oid:
            self._send(400, {"error": "content does not match its oid"})
            return
        self.state.lfs_objects[oid] = body
        self.state.lfs_uploads += 1
        self._send(200, {})

    def commit(self, body: bytes, repo: str, rev: str) -> None:
        branch = self._branch(repo, rev)
        if branch is None:
            return
        if self.state.fail_commits > 0:
            self.state.fail_commits -= 1
            self._send(500, {"error": "Internal Error - We're working hard to fix this as soon as possible!"})
            return
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = lines[0]["value"]
        if header.get("parentCommit") not in (None, branch.sha):
            self._send(412, {"error": "A commit has happened since. Please refresh and try again."})
            return
        files = dict(branch.files)
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.state.lfs_objects:
                    self._send(400, {"error": f"LFS object {value['oid']} was never uploaded"})
                    return
                files[value["path"]] = self.state.lfs_objects[value["oid"]]
            elif line["key"] == "deletedFile":
                files.pop(value["path"], None)
            else:
                self._send(400, {"error": f"unsupported operation {line['key']}"})
                return
        branch.files, branch.sha = files, self.state.new_sha()
        self._send(200, {"commitUrl": f"{self.state.base_url}/{repo}/commit/{branch.sha}", "commitOid": branch.sha})


@pytest.fixture
def hub(monkeypatch):
    """Start the server on an ephemeral port, point huggingface_hub at it with a fake token, stop it afterwards."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), HubHandler)
    state = HubState(token=FAKE_TOKEN, base_url=f"http://127.0.0.1:{server.server_address[1]}")
    server.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", state.base_url)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # huggingface_hub 2.x depends on hf_xet and sends LFS files with the Xet protocol unless it is disabled; this
    # server implements only the LFS batch protocol.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def run_dir(tiny_bert, tmp_path_factory) -> Path:
    return build_run_folder(tmp_path_factory.mktemp("publish-upload"), tiny_bert)


def publish(run_dir: Path, repo_id: str = "someone/tiny-align", **options) -> list[str]:
    return publish_run(run_dir, PublishOptions(repo_id=repo_id, license="mit", **options)).paths


def staged_files(run_dir: Path, out_dir: Path, repo_id: str = "someone/tiny-align", **options) -> dict[str, bytes]:
    """Return the files of a dry run, which are exactly what an upload with the same options must deliver."""
    publish(run_dir, repo_id, dry_run=out_dir, **options)
    return {path.relative_to(out_dir).as_posix(): path.read_bytes() for path in out_dir.rglob("*") if path.is_file()}


def test_upload_delivers_dry_run_files(hub, run_dir, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    before = snapshot(run_dir)
    args = ["publish", str(run_dir), "--repo-id", "someone/tiny-align", "--license", "mit", "--private"]
    assert main([*args, "--dry-run", str(tmp_path / "dry")]) == 0
    expected = {
        path.relative_to(tmp_path / "dry").as_posix(): path.read_bytes()
        for path in (tmp_path / "dry").rglob("*")
        if path.is_file()
    }
    assert hub.requests == []
    assert main(args) == 0
    repo = hub.repos["someone/tiny-align"]
    assert repo.private
    files = repo.branches["main"].files
    assert set(files) == set(expected) | {".gitattributes"}
    for path, data in expected.items():
        assert files[path] == data, path
    assert hub.lfs_uploads == 1  # model.safetensors, through the LFS batch endpoint and a PUT
    assert snapshot(run_dir) == before
    captured = capsys.readouterr()
    assert f"Published {len(expected)} files to someone/tiny-align" in captured.out
    assert FAKE_TOKEN not in captured.out + captured.err + caplog.text


def test_missing_token_fails_before_any_request(hub, run_dir, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(PublishError, match="HF_TOKEN.*hf auth login"):
        publish(run_dir)
    assert hub.requests == []


def test_offline_mode_fails_before_any_request(hub, run_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PublishError, match="HF_HUB_OFFLINE is set"):
        publish(run_dir)
    assert hub.requests == []


def test_closed_port_fails_within_seconds(hub, run_dir, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    started = time.monotonic()
    with pytest.raises(PublishError, match="No commit was made") as raised:
        publish(run_dir)
    assert time.monotonic() - started < 10
    assert FAKE_TOKEN not in str(raised.value)


def test_rejected_token_says_so(hub, run_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrongTOKENwrongTOKENwrongTOKEN")
    with pytest.raises(PublishError, match="token was rejected") as raised:
        publish(run_dir)
    assert "hf_wrongTOKEN" not in str(raised.value)


def test_foreign_repo_needs_branch_or_force(hub, run_dir, tmp_path):
    hub.add_repo("someone/other-model", {"README.md": b"# mine\n", "weights.bin": b"123"})
    with pytest.raises(PublishError, match="2 file\\(s\\) that isotune did not publish.*--revision"):
        publish(run_dir, "someone/other-model")
    assert set(hub.repos["someone/other-model"].branches["main"].files) == {
        ".gitattributes",
        "README.md",
        "weights.bin",
    }

    expected = staged_files(run_dir, tmp_path / "branch", "someone/other-model", revision="isotune-v1")
    publish(run_dir, "someone/other-model", revision="isotune-v1")
    branches = hub.repos["someone/other-model"].branches
    assert {path: branches["isotune-v1"].files[path] for path in expected} == expected
    assert set(branches["isotune-v1"].files) == set(expected) | {".gitattributes"}
    assert branches["main"].files["README.md"] == b"# mine\n"

    expected = staged_files(run_dir, tmp_path / "force", "someone/other-model", force=True)
    publish(run_dir, "someone/other-model", force=True)
    main_files = branches["main"].files
    assert main_files["weights.bin"] == b"123"
    assert main_files["README.md"] == expected["README.md"]


def test_republish_removes_stale_files(hub, run_dir, tmp_path):
    publish(run_dir)
    branch = hub.repos["someone/tiny-align"].branches["main"]
    branch.files["plots/old.png"] = b"old plot"
    publish(run_dir)
    assert "plots/old.png" not in branch.files
    assert "plots/alignment_uniformity.png" in branch.files


def test_public_repo_with_private_flag_is_rejected(hub, run_dir):
    hub.add_repo("someone/tiny-align", {})
    with pytest.raises(PublishError, match="exists and is public, but --private"):
        publish(run_dir, private=True)
    assert hub.repos["someone/tiny-align"].branches["main"].files == {".gitattributes": GITATTRIBUTES}


def test_failed_commit_changes_nothing_and_retry_works(hub, run_dir, tmp_path):
    hub.fail_commits = 1
    with pytest.raises(PublishError, match="No commit was made.*the repository was created"):
        publish(run_dir)
    assert hub.repos["someone/tiny-align"].branches["main"].files == {".gitattributes": GITATTRIBUTES}
    assert hub.lfs_uploads == 1
    paths = publish(run_dir)
    assert set(hub.repos["someone/tiny-align"].branches["main"].files) == set(paths) | {".gitattributes"}
    assert hub.lfs_uploads == 1  # the Hub already had model.safetensors, so the retry did not send it again


def test_failed_lfs_upload_names_file_and_cause(hub, run_dir):
    hub.reject_lfs_uploads = True
    with pytest.raises(PublishError, match="model.safetensors.*403.*No commit was made"):
        publish(run_dir)
    assert hub.repos["someone/tiny-align"].branches["main"].files == {".gitattributes": GITATTRIBUTES}
