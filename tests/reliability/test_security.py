"""Promise 7: no network, no secrets. Promise 8 (in-process part): every error is a problem.

The server side runs through TestClient with the fake models of tests/unit/test_api.py.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import textwrap

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import ServiceState
from api.serving import ServedIndex
from rag.config import Settings
from rag.errors import CorruptIndexError

from ..conftest import REPO
from ..unit.test_api import ASK, FakeGenerator, make_client, setup  # noqa: F401

KEY = "canary-key-5f1d0b7a9e"
PATH = re.compile(r"(/[\w.+-]+){2,}")


def test_outbound_network_is_refused_in_tests_and_their_subprocesses() -> None:
    with pytest.raises(ConnectionRefusedError, match="disabled"), socket.socket() as sock:
        sock.connect(("203.0.113.7", 443))  # TEST-NET-3: would time out, not be refused
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("pypi.org", 443)
    child = subprocess.run(
        [sys.executable, "-c", "import socket; socket.create_connection(('203.0.113.7', 443), 5)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 1 and "outbound network is disabled" in child.stderr
    with socket.socket() as server, socket.socket() as client:  # loopback still works
        server.bind(("127.0.0.1", 0))
        server.listen()
        client.connect(server.getsockname())


def test_server_sets_offline_mode_for_model_libraries(tmp_path) -> None:
    script = textwrap.dedent(
        """
        import json, os
        from fastapi.testclient import TestClient
        from api.app import create_app
        from rag.config import Settings

        def loader(service):
            import huggingface_hub.constants as hub
            import transformers.utils.hub as hf
            service.offline = [hub.HF_HUB_OFFLINE, hf.is_offline_mode()]

        app = create_app(Settings(index_root=os.environ["ROOT"]), ["x"], loader=loader,
                         background=False)
        with TestClient(app):
            print(json.dumps(app.state.service.offline))
        """
    )
    env = {"PATH": "/usr/bin:/bin", "ROOT": str(tmp_path), "HF_HUB_OFFLINE": "0"}
    child = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert json.loads(child.stdout.strip().splitlines()[-1]) == [True, True]


def test_api_key_is_compared_in_constant_time(setup, monkeypatch) -> None:  # noqa: F811
    import api.deps

    calls = []

    def spy(given, expected):
        calls.append((given, expected))
        return given == expected

    monkeypatch.setattr(api.deps.secrets, "compare_digest", spy)
    with make_client(setup, api_key=KEY) as client:
        for given in ("x", KEY[:-1] + "0", "much-longer-than-the-real-key-" * 3):
            response = client.post("/ask", json=ASK, headers={"x-api-key": given})
            assert response.status_code == 401 and KEY not in response.text
        assert client.post("/ask", json=ASK, headers={"x-api-key": KEY}).status_code == 200
        for other in ("Bearer wrong", "Basic Zm9vOmJhcg=="):  # a wrong second credential
            both = {"x-api-key": KEY, "authorization": other}
            assert client.post("/ask", json=ASK, headers=both).status_code == 401, other
    assert len(calls) == 8, "every comparison, whatever the length, goes through compare_digest"
    assert all(expected == KEY.encode() for _, expected in calls)


def test_unknown_host_headers_are_refused_when_hosts_are_listed(setup) -> None:  # noqa: F811
    with make_client(setup) as client:  # not configured: any host
        assert client.get("/healthz", headers={"host": "evil.example"}).status_code == 200
    with make_client(setup, allowed_hosts=["rag.example.org", "127.0.0.1"]) as client:
        for host in ("rag.example.org", "rag.example.org:8000", "127.0.0.1:8000"):
            assert client.get("/healthz", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "rag.example.org.evil.example", "localhost"):
            refused = client.post("/ask", json=ASK, headers={"host": host})
            assert refused.status_code == 400, host
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["title"] == "Unknown host"


def test_no_cors_headers_unless_origins_are_configured(setup) -> None:  # noqa: F811
    origin = {"origin": "https://evil.example"}
    preflight = {**origin, "access-control-request-method": "POST"}
    with make_client(setup) as client:
        for response in (
            client.post("/ask", json=ASK, headers=origin),
            client.options("/ask", headers=preflight),
            client.get("/readyz", headers=origin),
        ):
            assert not any(h.startswith("access-control-") for h in response.headers)
    with make_client(setup, cors_origins=["https://app.example"]) as client:
        allowed = client.post("/ask", json=ASK, headers={"origin": "https://app.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = client.post("/ask", json=ASK, headers=origin)
        assert "access-control-allow-origin" not in other.headers


class Exploding(FakeGenerator):
    def generate(self, messages, **options) -> str:
        raise RuntimeError(f"cannot open /opt/secret/models/weights.bin with key {KEY}")


def error_responses(setup, tmp_path) -> dict[str, object]:  # noqa: F811
    """One response of every kind of error the service can give."""
    out = {}
    with make_client(setup, api_key=KEY) as client:
        out["401"] = client.post("/ask", json=ASK)
    auth = {"x-api-key": KEY}
    root, embedder = setup
    settings = Settings(
        index_root=root, embedder="fake-bow", min_score=0.3, min_sentence_score=0.0, api_key=KEY
    )

    def exploding(service: ServiceState) -> None:
        service.served["tiny"] = ServedIndex(service.settings, "tiny", embedder, Exploding())

    app = create_app(settings, ["tiny"], loader=exploding, background=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        out["500"] = client.post("/ask", json=ASK, headers=auth)
        out["500 stream"] = client.post("/ask/stream", json=ASK, headers=auth)
        out["404 route"] = client.get("/nope", headers=auth)
        out["404 index"] = client.post("/ask", json={**ASK, "index": "other"}, headers=auth)
        out["405"] = client.delete("/ask", headers=auth)
        out["422"] = client.post("/ask", content=b"{oops", headers=auth)
        out["413"] = client.post("/ask", content=b"x" * 100_000, headers=auth)
        queue = client.app.state.service.queue
        for _ in range(queue.limit):
            queue.acquire()
        out["503 queue"] = client.post("/ask", json=ASK, headers=auth)

    def broken(service: ServiceState) -> None:
        raise CorruptIndexError(f"index file {root}/tiny/v-1/vectors.faiss is truncated")

    app = create_app(Settings(index_root=root, embedder="fake-bow"), ["tiny"], loader=broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.get("/healthz")
        out["503 not ready"] = client.get("/readyz")
        out["503 ask not ready"] = client.post("/ask", json=ASK)
    return out


def test_error_bodies_hold_no_trace_path_or_secret(setup, tmp_path) -> None:  # noqa: F811
    responses = error_responses(setup, tmp_path)
    for kind, response in responses.items():
        body = response.text
        assert "Traceback" not in body and 'File "' not in body, kind
        assert not PATH.search(body), f"{kind}: {body}"
        assert KEY not in body, kind


def test_every_error_is_a_problem_document(setup, tmp_path) -> None:  # noqa: F811
    """Promise 8: type, title, status (equal to the HTTP status) and detail on every non-2xx."""
    responses = error_responses(setup, tmp_path)
    for kind, response in responses.items():
        if kind.endswith("stream"):  # the stream had begun: the error is its last event
            assert response.text.rstrip().splitlines()[-2] == "event: error", kind
            continue
        assert response.status_code == int(kind[:3]), kind
        assert response.headers["content-type"] == "application/problem+json", kind
        body = response.json()
        assert {"type", "title", "status", "detail"} <= set(body), kind
        assert body["status"] == response.status_code and body["title"] and body["detail"], kind
