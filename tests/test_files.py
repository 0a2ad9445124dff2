"""The one atomic-write module (model/base/files.py): readers see the old or the whole new version,
a writer that dies leaves only a temporary name, and publishing does not touch other writers' files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from model.base.files import atomic_folder, atomic_path, atomic_write, is_temporary, publish, temporary


def test_a_file_is_replaced_whole_and_no_temporary_stays(tmp_path: Path):
    path = tmp_path / "deep" / "state.json"
    atomic_write(path, "old")
    atomic_write(path, b"new")
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path: Path):
    path = tmp_path / "state.json"
    atomic_write(path, "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_folder_replaces_the_old_one_whole(tmp_path: Path):
    folder = tmp_path / "model"
    with atomic_folder(folder) as tmp:
        (tmp / "a").write_text("1")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b").write_text("2")
    with atomic_folder(folder) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == ["c"]


def test_temporary_names_are_recognised_and_shared_ones_agree(tmp_path: Path):
    step = tmp_path / "step_0000100"
    assert temporary(step, shared=True) == tmp_path / ".step_0000100.tmp"  # every rank computes it
    assert temporary(step).name == f".step_0000100.tmp-{os.getpid()}"
    assert is_temporary(temporary(step)) and is_temporary(temporary(step, shared=True))
    assert not is_temporary(step) and not is_temporary(tmp_path / ".hidden")


def test_a_writer_killed_mid_write_leaves_the_old_file_and_only_a_temporary(tmp_path: Path):
    path = tmp_path / "big.bin"
    atomic_write(path, b"old")
    started = tmp_path / "started"
    code = (f"from pathlib import Path\nfrom model.base.files import atomic_path\n"
            f"with atomic_path(Path({str(path)!r})) as tmp:\n"
            f"    f = open(tmp, 'wb'); f.write(b'x' * 1000); f.flush()\n"
            f"    Path({str(started)!r}).touch()\n"
            f"    import time; time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parent.parent)
    try:
        for _ in range(3000):
            if started.exists() or proc.poll() is not None:
                break
            threading.Event().wait(0.01)
        assert started.exists(), "the writer started"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert path.read_bytes() == b"old"
    leftovers = [p for p in tmp_path.iterdir() if p.name not in ("big.bin", "started")]
    assert len(leftovers) == 1 and is_temporary(leftovers[0])
    atomic_write(path, b"new")  # the next writer of the same path goes on
    assert path.read_bytes() == b"new"


def test_publishing_does_not_touch_files_other_writers_are_renaming(tmp_path: Path):
    """Many workers commit markers into one folder at once (the pipeline's _state/done/): each
    publish flushes its own file and the folder, never the others' temporaries."""
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(200):
                atomic_write(tmp_path / f"{k}.{i}.json", "{}")
        except BaseException as err:  # noqa: BLE001 (reported below)
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(list(tmp_path.iterdir())) == 800


def test_publish_replaces_a_folder_with_a_finished_temporary(tmp_path: Path):
    final, tmp = tmp_path / "step_1", temporary(tmp_path / "step_1", shared=True)
    final.mkdir()
    (final / "old").write_text("")
    tmp.mkdir()
    (tmp / "new").write_text("")
    publish(tmp, final)
    assert [p.name for p in final.iterdir()] == ["new"] and not tmp.exists()
