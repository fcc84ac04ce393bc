"""Command line and environment parsing: every flag, env fallbacks, one-line errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app import parse_settings
from hitl.auth import add_user

ROOT = Path(__file__).resolve().parents[1]


def run_app(*args, env=None):
    return subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=env)


def test_help_documents_every_flag():
    out = run_app("--help").stdout
    for flag in ("--images", "--session", "--task", "--classes", "--host", "--port", "--share",
                 "--auth", "--auth-file", "--device", "--backbone", "--mode", "--import",
                 "--allow-anonymous", "HITL_IMAGES"):
        assert flag in out


def test_flags_parse(tmp_path):
    s, _ = parse_settings(["--images", "a", "b/*.png", "--images", "c", "--session",
                           str(tmp_path), "--task", "segmentation", "--classes", " x, y ,z",
                           "--port", "9000", "--auth", "ann:pa:ss", "--device", "cpu",
                           "--backbone", "resnet18", "--mode", "finetune"], env={})
    assert s.images == ["a", "b/*.png", "c"] and s.session_dir == tmp_path
    assert s.task == "segmentation" and s.classes == ["x", "y", "z"] and s.port == 9000
    assert s.auth == [("ann", "pa:ss")] and s.device == "cpu" and s.mode == "finetune"


def test_environment_fills_unset_flags(tmp_path):
    env = {"HITL_IMAGES": "hf://datasets/o/n,/tmp/x", "HITL_SESSION": str(tmp_path),
           "HITL_PORT": "8123", "HITL_TASK": "classification", "HITL_TRAIN": "0",
           "HITL_AUTH": "a:1,b:2"}
    s, _ = parse_settings([], env=env)
    assert s.images == ["hf://datasets/o/n", "/tmp/x"] and s.port == 8123
    assert s.task == "classification" and s.train is False
    assert s.auth == [("a", "1"), ("b", "2")]
    s, _ = parse_settings(["--port", "9999"], env=env)
    assert s.port == 9999  # a flag wins over the environment


def test_default_session_dir_follows_data_volume(monkeypatch, tmp_path):
    from hitl import settings as settings_module
    monkeypatch.setattr(settings_module.Path, "is_dir", lambda self: str(self) == "/data")
    assert settings_module.default_session_dir() == Path("/data/session")


@pytest.mark.parametrize("args, env, flag", [
    (["--port", "seven"], {}, "--port"),
    (["--task", "detection"], {}, "--task"),
    ([], {"HITL_PORT": "-3"}, "--port (from HITL_PORT)"),
    ([], {"HITL_MODE": "fast"}, "--mode (from HITL_MODE)"),
    (["--auth", "nocolon"], {}, "--auth"),
])
def test_bad_values_get_one_line_and_exit_2(args, env, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_settings(args, env=env)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err


def test_share_needs_a_login(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_settings(["--share"], env={})
    assert exc.value.code == 2 and "--auth" in capsys.readouterr().err
    s, _ = parse_settings(["--share", "--allow-anonymous"], env={})
    assert s.share and s.allow_anonymous
    auth_file = tmp_path / "users"
    add_user(auth_file, "ann", "secret")
    s, _ = parse_settings(["--share", "--auth-file", str(auth_file)], env={})
    assert s.auth_file == auth_file


def test_share_refusal_from_the_real_command(tmp_path):
    result = run_app("--share", "--session", str(tmp_path / "s"))
    assert result.returncode == 2
    assert "public" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()  # refused before anything was written
