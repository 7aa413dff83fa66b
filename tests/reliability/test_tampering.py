"""Promise 2: a corrupt or tampered index is detected, never served; nothing is unpickled."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import pickle
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import ServiceState
from api.serving import ServedIndex
from rag.config import Settings
from rag.documents import load_corpus
from rag.errors import CorruptIndexError
from rag.indexing import sync_index
from rag.store import CURRENT, load_index

from ..conftest import REPO, SAMPLE
from ..unit.test_api import ASK, FakeGenerator, make_client, setup  # noqa: F401
from ..unit.test_store import chunker


class Detonator:
    """Unpickling this writes a file: proof that something unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def rewrite_manifest(version: Path) -> None:
    """What a careless tool (or an attacker) would do: make the checksums match again."""
    manifest = json.loads((version / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((version / name).read_bytes()).hexdigest()
    (version / "manifest.json").write_text(json.dumps(manifest))


def truncate_vectors(version: Path) -> str:
    data = (version / "vectors.faiss").read_bytes()
    (version / "vectors.faiss").write_bytes(data[: len(data) // 3])
    return "vectors.faiss"


def flip_chunk_byte(version: Path) -> str:
    data = bytearray((version / "chunks.sqlite").read_bytes())
    data[len(data) // 2] ^= 0x01
    (version / "chunks.sqlite").write_bytes(bytes(data))
    return "chunks.sqlite"


def chunks_out_of_step(version: Path) -> str:
    """One chunk row fewer than vectors, with checksums recomputed so only counts differ."""
    db = sqlite3.connect(version / "chunks.sqlite")
    db.execute("DELETE FROM chunks WHERE id = (SELECT max(id) FROM chunks)")
    db.commit()
    db.close()
    rewrite_manifest(version)
    return "chunks.sqlite"


def planted_pickle(version: Path) -> str:
    (version / "vectors.pkl").write_bytes(pickle.dumps(Detonator(version.parent / "BOOM")))
    return "vectors.pkl"


def pickle_as_vectors(version: Path) -> str:
    """A pickle in place of the FAISS file, with a matching checksum in the manifest."""
    (version / "vectors.faiss").write_bytes(pickle.dumps(Detonator(version.parent / "BOOM")))
    rewrite_manifest(version)
    return "vectors.faiss"


TAMPERINGS: list[Callable[[Path], str]] = [
    truncate_vectors,
    flip_chunk_byte,
    chunks_out_of_step,
    planted_pickle,
    pickle_as_vectors,
]


def live(root: Path) -> Path:
    directory = root / "tiny"
    return directory / (directory / CURRENT).read_text().strip()


@pytest.mark.parametrize("tamper", TAMPERINGS, ids=lambda f: f.__name__)
def test_load_fails_naming_the_file(setup, tamper) -> None:  # noqa: F811
    root, _ = setup
    filename = tamper(live(root))
    with pytest.raises(CorruptIndexError, match=filename.replace(".", r"\.")):
        load_index(root, "tiny")
    assert not (root / "tiny" / "BOOM").exists(), "something unpickled the planted file"


@pytest.mark.parametrize("tamper", TAMPERINGS, ids=lambda f: f.__name__)
def test_running_server_keeps_the_last_good_version(setup, tiny_corpus, tamper) -> None:  # noqa: F811
    root, embedder = setup
    with make_client(setup) as client:
        good = client.post("/search", json=ASK).json()["version"]
        (tiny_corpus / "beta.txt").write_text("Beta station keeps forty goats now.\n")
        report = sync_index(
            load_corpus(tiny_corpus), root, "tiny", embedder, chunker(embedder), show_progress=False
        )
        filename = tamper(root / "tiny" / report.version)
        for path in ("/search", "/ask"):
            response = client.post(path, json=ASK)
            assert response.status_code == 200 and response.json()["version"] == good, path
        assert "seventeen goats" in client.post("/ask", json=ASK).json()["answer"]
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["versions"]["tiny"] == good
        assert filename in ready.json()["errors"]["tiny"]
        assert not (root / "tiny" / "BOOM").exists()


@pytest.mark.parametrize("tamper", TAMPERINGS, ids=lambda f: f.__name__)
def test_cold_start_is_not_ready_instead_of_answering(setup, tamper) -> None:  # noqa: F811
    root, embedder = setup
    filename = tamper(live(root))

    def loader(service: ServiceState) -> None:
        service.served["tiny"] = ServedIndex(service.settings, "tiny", embedder, FakeGenerator())

    settings = Settings(index_root=root, embedder="fake-bow")
    app = create_app(settings, ["tiny"], loader=loader, background=False)
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and filename in ready.json()["detail"]
        for path in ("/ask", "/search"):
            refused = client.post(path, json=ASK)
            assert refused.status_code == 503 and refused.headers["retry-after"], path
            assert filename in refused.json()["detail"]
        assert "/tmp" not in ready.text + refused.text, "directories stay in the log"


def test_rag_serve_refuses_a_corrupt_index_at_start(setup) -> None:  # noqa: F811
    root, _ = setup
    truncate_vectors(live(root))
    serve = subprocess.run(
        [sys.executable, "-m", "rag.cli", "serve", "--index", "tiny", "--port", "1"],
        cwd=REPO,
        env={"RAG_INDEX_ROOT": str(root), "RAG_EMBEDDER": "fake-bow", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert serve.returncode == 2 and "vectors.faiss" in serve.stderr, serve.stderr


UNPICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def test_no_code_path_can_unpickle() -> None:
    """No module of rag/ or api/ imports an unpickler or calls torch.load / allow_pickle."""
    offences = []
    for path in sorted([*REPO.glob("rag/**/*.py"), *REPO.glob("api/**/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            if UNPICKLERS & set(names):
                offences.append(f"{path.relative_to(REPO)}:{node.lineno} imports {names}")
            if isinstance(node, ast.Call):
                call = ast.unparse(node.func)
                keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                if call.endswith("torch.load") and keywords.get("weights_only") != "True":
                    offences.append(f"{path.relative_to(REPO)}:{node.lineno} {call}")
                if keywords.get("allow_pickle") == "True":
                    offences.append(f"{path.relative_to(REPO)}:{node.lineno} allow_pickle")
    assert offences == []


@pytest.mark.slow
def test_indexing_and_answering_with_the_real_models_never_unpickle(tmp_path: Path) -> None:
    """The real CLI with pickle and torch.load disabled: index, then ask, both succeed."""
    env = {**os.environ, "RAG_INDEX_ROOT": str(tmp_path / "indexes"), "RAG_DEBUG": "1"}
    guarded = [sys.executable, "-m", "tests.reliability.no_pickle"]
    for args in (
        ["index", str(SAMPLE), "--index", "sample", "--json"],
        ["ask", "What is the name of the station cat?", "--index", "sample", "--json"],
    ):
        run = subprocess.run(
            [*guarded, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
        )
        assert run.returncode == 0, run.stderr[-3000:]
    assert "Biscuit Admiral" in json.loads(run.stdout)["answer"]
