"""Start-up refusals that keep a share link safe: one line, exit 2, never an open app."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def run_app(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "app.py", "--port", str(free_port()), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("content", ["", "# only a comment\n\n"])
def test_an_auth_file_without_users_is_refused(tmp_path, content):
    users = tmp_path / "users.txt"
    users.write_text(content)
    done = run_app("--share", "--auth-file", str(users), "--session", str(tmp_path / "s"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "has no users" in lines[0] and "adduser" in lines[0]
    assert not (tmp_path / "s").exists()  # nothing was started


def test_a_second_app_on_the_same_session(tmp_path):
    """Another process holds the session's database: one line naming both, exit 2."""
    session = tmp_path / "s"
    session.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
         "print('ready', flush=True); sys.stdin.read()", str(session / "hitl.duckdb")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        done = run_app("--session", str(session), "--no-train", "--no-pretrained")
        assert done.returncode == 2, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("hitl: error: the session ") and str(session) in last
        assert f"process {holder.pid}" in last and "Traceback" not in done.stderr
    finally:
        holder.stdin.close()
        holder.wait(30)


def test_hugging_face_sign_in_from_the_environment():
    from app import parse_settings
    s, _ = parse_settings(["--share"], env={"HITL_HF_USERS": "alice, bob", "HITL_HF_ORGS": "lab",
                                            "HITL_HF_ADMINS": "carol"})
    assert (s.hf_users, s.hf_orgs, s.hf_admins) == (["alice", "bob"], ["lab"], ["carol"])
    from hitl.access import Access
    access = Access.from_settings(s)
    assert [access.hf.role_of(n, o) for n, o in [("carol", []), ("alice", []), ("dan", ["lab"]),
                                                 ("eve", ["x"])]] == [
        "admin", "labeler", "labeler", "guest"]
    with pytest.raises(SystemExit) as exc:
        parse_settings(["--hf-users", "a", "--auth", "x:y"], env={})
    assert exc.value.code == 2
