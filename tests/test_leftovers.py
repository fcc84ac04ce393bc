"""What a killed export leaves behind is removed at the next start (never a running process's
folders), and the catalogue says "dangling symlink" for one."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hitl import catalog
from hitl.export import MARKER, atomic_folder
from hitl.export_leftovers import STARTED
from tests.test_export import make_segmentation

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, timeout=60)
    return int(done.stdout)


def leftover(folder: Path, files: int = 20, marker: str | None = None, old: bool = True) -> Path:
    folder.mkdir(parents=True)
    for i in range(files):
        (folder / f"{i}.png").write_bytes(b"x")
    if marker is not None:
        (folder / MARKER).write_text(marker)
    if old:
        os.utime(folder, (STARTED - 60, STARTED - 60))
    return folder


def test_the_app_removes_export_folders_of_apps_that_are_gone(tmp_path, monkeypatch,
                                                                  session_factory, dead_pid):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    tmp = tmp_path / "tmp"
    gone = leftover(tmp / f"hitl-export-{dead_pid}-abc", files=800)
    mine = leftover(tmp / f"hitl-mine-{dead_pid}-def")
    legacy = leftover(tmp / "hitl-export-k2j3h4")  # made before folders named their process
    running = leftover(tmp / f"hitl-export-{os.getppid()}-ghi")  # a live process's, recent
    fresh = leftover(tmp / f"hitl-export-{dead_pid}-new", old=False)  # not older than us
    other = leftover(tmp / "someone-elses-export")
    from hitl.service import Service
    Service(session_factory(train=False))  # the app's start
    assert not gone.exists() and not mine.exists() and not legacy.exists()
    assert running.exists() and fresh.exists() and other.exists()


def test_an_export_removes_what_a_killed_export_left_beside_it(tmp_path, dead_pid):
    out = tmp_path / "out" / "masks"
    killed = leftover(out.parent / ".masks.x1y2z3.tmp", files=800,
                      marker=f"written by hitl export (pid {dead_pid}); ...")
    busy = leftover(out.parent / ".masks.b4c5d6.tmp", marker=f"... (pid {os.getpid()}); ...")
    unmarked = leftover(out.parent / ".masks.e7f8g9.tmp")  # not provably ours: left alone
    with atomic_folder(out) as folder:
        (folder / "a.txt").write_text("a")
    assert (out / "a.txt").is_file()
    assert not killed.exists() and busy.exists() and unmarked.exists()


def test_the_cli_export_cleans_up_after_a_killed_one(tmp_path, dead_pid):
    store, _ = make_segmentation(tmp_path)
    session = store.path.parent
    store.close()
    out = tmp_path / "exp_masks"
    killed = leftover(tmp_path / ".exp_masks.abcd1234.tmp", files=50,
                      marker=f"written by hitl export (pid {dead_pid}); ...")
    result = subprocess.run([sys.executable, "-m", "hitl", "export", "--session", str(session),
                             "--format", "masks", "--out", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not killed.exists() and (out / "masks").is_dir()
    assert not list(tmp_path.glob(".exp_masks.*.tmp"))


def test_a_dangling_symlink_is_named_as_one(tmp_path, caplog):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with caplog.at_level(logging.WARNING):
        files, skipped, _ = catalog.find_files([str(folder)])
    assert files == [] and skipped == 1
    assert "gone.jpg: dangling symlink" in caplog.text and "FIFO" not in caplog.text
