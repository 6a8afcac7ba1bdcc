"""Files shared by pytest-xdist workers: made once however many workers ask at the same time."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from tests.shared_files import locked, made_once_in


def _make(directory: Path) -> None:
    with open(directory.parent / "makes.log", "a") as log:
        log.write("made\n")
    time.sleep(0.2)  # long enough for every other worker to be waiting on the lock
    (directory / "clip.mp4").write_bytes(b"media")


def _worker(root: Path) -> str:
    return str(made_once_in(root, "media", _make))


def test_workers_asking_at_once_get_one_directory_made_once(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        made = pool.map(_worker, [tmp_path] * 4)
    assert len(set(made)) == 1 and (Path(made[0]) / "clip.mp4").read_bytes() == b"media"
    assert (tmp_path / "makes.log").read_text() == "made\n"


def test_a_half_made_directory_is_made_again(tmp_path: Path) -> None:
    (tmp_path / "shared-media.partial").mkdir()  # a worker died while making it
    (tmp_path / "shared-media.partial" / "half.mp4").write_bytes(b"")
    target = made_once_in(tmp_path, "media", _make)
    assert sorted(p.name for p in target.iterdir()) == ["clip.mp4"]


def _append(path: Path) -> None:
    for _ in range(50):
        with locked(path):
            count = int(path.read_text()) if path.exists() else 0
            path.write_text(str(count + 1))


def test_locked_read_modify_write_loses_nothing(tmp_path: Path) -> None:
    counter = tmp_path / "matrix.json"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_append, [counter] * 4)
    assert counter.read_text() == "200"
