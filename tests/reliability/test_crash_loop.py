"""Promise 1: an index build either completes or changes nothing (SIGKILL, disk full).

Promise 4: one writer at a time.

The builds are real `rag index` processes (tests/reliability/fake_cli.py: the real CLI and
store with the fake embedder, so a process starts in about a second and dozens fit in CI).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from rag.store import CURRENT

from .conftest import (
    corpus_state,
    document_text,
    fake_rag,
    leftovers,
    run_fake_rag,
    scaled,
    verify_index,
    write_corpus,
)

DOCUMENTS, WORDS = 1200, 1200  # a full build takes several seconds on two cores (~4 s idle)


def mutate(corpus: Path, rng) -> str:
    """Change the corpus the way a user would between two `rag index` runs."""
    files = sorted(corpus.iterdir())
    kind = rng.choice(["edit", "add", "remove", "mixed", "rebuild"])
    if kind in ("edit", "mixed"):
        for path in rng.sample(files, min(len(files), rng.randint(1, 40))):
            path.write_text(document_text(rng, 1200))
    if kind in ("add", "mixed"):
        for _ in range(rng.randint(1, 40)):
            (corpus / f"new{rng.randrange(10**9):09d}.txt").write_text(document_text(rng, 1200))
    if kind in ("remove", "mixed"):
        for path in rng.sample(files, min(len(files) - 20, rng.randint(1, 30))):
            path.unlink()
    return kind


def wait_for_publishing(directory: Path, process: subprocess.Popen, before: set[str]) -> None:
    """Return as soon as the writer starts its last, shortest phase: writing the version.

    Uniformly random kills rarely land in those few tens of milliseconds, where a wrong
    order of writes, renames and fsyncs would show.
    """
    live = (directory / CURRENT).read_text().strip()
    while process.poll() is None:
        for entry in directory.iterdir():
            name = entry.name
            if name in before:  # left by an earlier kill, not this writer's doing
                continue
            if (name.startswith("v-") and name != live) or name == CURRENT + ".tmp":
                return
            if name.startswith(".tmp-") and (entry / "vectors.faiss").exists():
                return
        time.sleep(0.001)


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_the_index(tmp_path: Path, rng) -> None:
    """Kill `rag index` again and again, at random or while it publishes: old or new, never
    anything else."""
    root, corpus = tmp_path / "indexes", write_corpus(tmp_path / "corpus", DOCUMENTS, WORDS)
    directory = root / "crash"
    started = time.perf_counter()
    first = run_fake_rag("index", str(corpus), "--index", "crash", "--json", root=root)
    full_build = time.perf_counter() - started
    assert first.returncode == 0, first.stderr
    trials, outcomes = scaled(25), Counter()
    for trial in range(trials):
        before = verify_index(root, "crash")
        kind = mutate(corpus, rng)
        after = corpus_state(corpus)
        args = ["index", str(corpus), "--index", "crash", "--json"]
        present = {p.name for p in directory.iterdir()}
        process = fake_rag(
            *args,
            *(["--rebuild"] if kind == "rebuild" else []),
            root=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        when = rng.choice(["random", "publishing"])
        if when == "random":
            time.sleep(rng.uniform(0, full_build * 1.1))
        else:
            wait_for_publishing(directory, process, present)
            time.sleep(rng.uniform(0, 0.05))
        process.send_signal(signal.SIGKILL)
        code = process.wait()
        stderr = process.stderr.read().decode()
        process.stderr.close()
        assert code in (0, -signal.SIGKILL), stderr

        state = verify_index(root, "crash")  # loads, checksums match, tables agree
        assert state in (before, after), f"trial {trial} ({kind}): neither old nor new version"
        outcome = "finished" if code == 0 else ("old" if state == before else "new")
        left = leftovers(directory)
        outcomes[f"{when}: {outcome}"] += 1
        outcomes["left files behind"] += bool(left)

        if trial % 5 == 4 or trial == trials - 1:  # the next complete run cleans up
            done = run_fake_rag(*args, root=root)
            assert done.returncode == 0, done.stderr
            assert verify_index(root, "crash") == after
            assert leftovers(directory) == [], f"trial {trial}: not cleaned"
    print(f"crash loop: {trials} kills, full build {full_build:.1f} s, outcomes {dict(outcomes)}")
    killed = sum(n for k, n in outcomes.items() if k.endswith(("old", "new")))
    assert killed >= trials // 2, "most kills should land mid-run"


def test_no_change_run_cleans_what_a_kill_after_publishing_left(
    tmp_path: Path, tiny_corpus: Path
) -> None:
    """Killed between moving CURRENT and removing the old version: the next run cleans."""
    root = tmp_path / "indexes"
    assert run_fake_rag("index", str(tiny_corpus), "--index", "t", root=root).returncode == 0
    directory = root / "t"
    live = (directory / CURRENT).read_text().strip()
    shutil.copytree(directory / live, directory / "v-20000101T000000000000-000000")
    (directory / (CURRENT + ".tmp")).write_text(live + "\n")
    again = run_fake_rag("index", str(tiny_corpus), "--index", "t", root=root)
    assert again.returncode == 0 and "up to date" in again.stdout, again.stderr
    assert leftovers(directory) == []


def mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")


def test_disk_full_is_a_clear_error_and_keeps_the_previous_index(tmp_path: Path) -> None:
    root = tmp_path / "small-disk"
    mount_tmpfs(root, "3m")
    try:
        corpus = write_corpus(tmp_path / "corpus", 20, 300)
        assert run_fake_rag("index", str(corpus), "--index", "t", root=root).returncode == 0
        before = verify_index(root, "t")
        write_corpus(corpus, 200, 1200, seed=1)  # about 10 MB of index: cannot fit
        full = run_fake_rag("index", str(corpus), "--index", "t", root=root)
        assert full.returncode == 1, full.stdout + full.stderr
        assert (
            "error: no space left on device" in full.stderr
            and "previous version is intact" in full.stderr
        )
        assert "Traceback" not in full.stderr
        assert verify_index(root, "t") == before
        assert leftovers(root / "t") == [], "the failed build is removed"
    finally:
        subprocess.run(["umount", str(root)], check=False)


def test_second_writer_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    """Two `rag index` runs started together: one builds, the other is refused at once."""
    root, corpus = tmp_path / "indexes", write_corpus(tmp_path / "corpus", DOCUMENTS, WORDS)
    runs = [
        fake_rag(
            *("index", str(corpus), "--index", "t"),
            root=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 2], outputs
    refused = next(err for run, (_, err) in zip(runs, outputs, strict=True) if run.returncode)
    assert "error: another `rag index` is writing" in refused and "Traceback" not in refused
    assert verify_index(root, "t") == corpus_state(corpus)
    assert leftovers(root / "t") == []


@pytest.mark.slow
def test_concurrent_writers_leave_one_consistent_index(tmp_path: Path, rng) -> None:
    """Many `rag index` runs at once on changing corpora: each succeeds or is refused."""
    root = tmp_path / "indexes"
    corpora = [write_corpus(tmp_path / f"c{n}", 60, 600, seed=n) for n in range(4)]
    states = [corpus_state(c) for c in corpora]
    results = Counter()
    for _round in range(scaled(5)):
        runs = [
            fake_rag(
                "index",
                str(rng.choice(corpora)),
                "--index",
                "t",
                root=root,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        for run in runs:
            _, err = run.communicate(timeout=300)
            if run.returncode == 2:
                assert "another `rag index` is writing" in err, err
                results["refused"] += 1
            else:
                assert run.returncode == 0, err
                results["succeeded"] += 1
        assert verify_index(root, "t") in states
    print(f"concurrent writers: {dict(results)}")
    assert results["succeeded"] >= scaled(5)
