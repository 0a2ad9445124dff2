"""Shared fixtures: generated corpora, the CLI, and the local SLURM cluster."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# Under pytest-xdist (``make test`` runs two workers on two cores), each worker's torch, and every
# process a test starts (they inherit the environment), computes on one thread: two workers with a
# thread per core each oversubscribe the cores, and a tiny training step then takes a second, not
# milliseconds.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
WORDS = (
    "the a of to and in that is was he for it with as his on be at by i this had not are but from "
    "or have an they which one you were her all she there would their we him been has when who will "
    "more no if out so said what up its about into than them can only other new some could time "
    "these two may then do first any my now such like our over man me even most made after also did "
    "many before must through back years where much your way well down should because each just "
    "those people mr how too little state good very make world still own see men work long get here "
    "between both life being under never day same another know while last might us great old year "
    "café naïve 東京 Ελλάδα — “quotes” 42 1984 3.14"
).split()


def make_corpus(folder: Path, docs: int, row_group_size: int, seed: int = 0,
                name: str = "part-00000.parquet", doc_words: tuple[int, int] = (20, 400)) -> Path:
    """A Parquet corpus shard of random documents (with some empty ones), as publish writes."""
    rng = random.Random(seed)
    rows = []
    for i in range(docs):
        n = rng.randint(*doc_words)
        text = " ".join(rng.choice(WORDS) for _ in range(n)) if i % 50 != 7 else ""
        rows.append({"id": f"{seed:04d}-{i:08d}", "url": f"https://example.com/{seed}/{i}",
                     "text": text})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return path


def run_cli(app: str, *overrides: str, timeout: float = 240, **kwargs) -> subprocess.CompletedProcess:
    """``python -m <app> overrides...`` in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", app, *overrides], cwd=REPO, capture_output=True, text=True,
        timeout=timeout, **kwargs,
    )


def stage_outputs(stage_root: Path) -> dict[str, bytes]:
    """Every output file of a stage folder (not its state, logs or timing stats), by name."""
    return {
        p.relative_to(stage_root).as_posix(): p.read_bytes()
        for p in sorted(stage_root.rglob("*"))
        if p.is_file() and "_state" not in p.parts and p.name != "stats.json"
    }


class SmallDisk:
    """A tmpfs of ``size`` (``mount``'s notation: ``300k``, ``16m``) mounted at ``path``: writes past
    its size fail with ENOSPC, as on a full disk."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs")

    def grow(self, size: str) -> None:
        """Make it ``size``, keeping its files: space freed, as a user would free it."""
        self._mount("-o", f"remount,size={size}")

    def free(self) -> int:
        """Bytes free."""
        disk = os.statvfs(self.path)
        return disk.f_bavail * disk.f_frsize

    def unmount(self) -> None:
        if subprocess.run(["umount", str(self.path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)  # still busy

    def _mount(self, *args: str) -> None:
        done = subprocess.run(["mount", *args, str(self.path)], capture_output=True, text=True)
        if done.returncode != 0:
            raise PermissionError(f"mount {' '.join(args)} {self.path}: {done.stderr.strip()}")


@pytest.fixture
def small_disk() -> Iterator[Callable[[Path, str], SmallDisk]]:
    """``small_disk(path, size)`` mounts a ``SmallDisk`` at ``path``; every one is unmounted after
    the test, whatever its outcome. Mounting takes root (or CAP_SYS_ADMIN): without it the test is
    skipped with the reason, and fails under CI=true."""
    mounted: list[SmallDisk] = []

    def mount(path: Path, size: str) -> SmallDisk:
        try:
            mounted.append(SmallDisk(path, size))
        except (PermissionError, FileNotFoundError) as err:  # not allowed, or no mount command
            problem = f"cannot mount a tmpfs for a full-disk test: {err}"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"CI=true requires the full-disk tests to run: {problem}")
            pytest.skip(problem)
        return mounted[-1]

    try:
        yield mount
    finally:
        for disk in reversed(mounted):
            disk.unmount()


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """The one-node cluster of slurm/local-cluster.sh. Under CI=true a missing cluster fails."""
    problem = None
    if shutil.which("sinfo") is None:
        problem = "sinfo not found (start it: bash slurm/local-cluster.sh start)"
    else:
        status = subprocess.run(["bash", str(REPO / "slurm/local-cluster.sh"), "status"],
                                capture_output=True, text=True, timeout=60)
        if status.returncode != 0:
            problem = f"local SLURM cluster not up: {status.stdout}{status.stderr}"
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true requires the SLURM tests to run: {problem}")
        pytest.skip(problem)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``-n 2``), the SLURM tests run one after another on one worker: the
    one-node cluster has two CPUs, and jobs of two tests at once would wait on each other."""
    for item in items:
        if item.get_closest_marker("slurm") is not None:
            item.add_marker(pytest.mark.xdist_group("slurm"))
