"""A Hugging Face Space: configured from the environment, images from a Hub dataset."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from app import parse_settings
from hitl.session import Session
from hitl.ui.app import space_warning


def fake_snapshot(source: Path):
    """Stands in for huggingface_hub.snapshot_download: copies a local 'dataset'."""
    calls = []

    def download(**kwargs):
        calls.append(kwargs)
        shutil.copytree(source, kwargs["local_dir"], dirs_exist_ok=True)
        return kwargs["local_dir"]
    return download, calls


def test_space_configured_from_environment(tmp_path):
    dataset = tmp_path / "hub" / "photos"
    dataset.mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (20, 10), (i * 50, 0, 0)).save(dataset / f"p{i}.png")
    env = {"HITL_IMAGES": "hf://datasets/someone/pets/photos",
           "HITL_SESSION": str(tmp_path / "data" / "session"), "HITL_TASK": "classification",
           "HITL_CLASSES": "cat,dog", "HITL_TRAIN": "0", "HITL_AUTH": "ann:pw",
           "HITL_PRETRAINED": "0", "HITL_BACKBONE": "test_vit"}
    settings, _ = parse_settings([], env=env)
    download, calls = fake_snapshot(tmp_path / "hub")
    session = Session(settings, hub_download=download)
    try:
        assert calls[0]["repo_id"] == "someone/pets" and calls[0]["repo_type"] == "dataset"
        assert Path(calls[0]["local_dir"]).is_relative_to(settings.downloads_dir)
        assert session.store.image_count() == 4
        assert session.store.task() == "classification"
        assert [c.name for c in session.store.classes()] == ["cat", "dog"]
        assert settings.auth == [("ann", "pw")]
    finally:
        session.close()


def test_offline_dataset_download_is_a_message_not_a_crash(tmp_path):
    settings, _ = parse_settings(["--images", "hf://datasets/someone/missing", "--session",
                                  str(tmp_path / "s"), "--no-train"], env={})

    def offline(**kwargs):
        from huggingface_hub.errors import LocalEntryNotFoundError
        raise LocalEntryNotFoundError("offline")
    session = Session(settings, hub_download=offline)
    try:
        assert any("someone/missing" in w for w in session.warnings)
        assert session.store.image_count() == 0
    finally:
        session.close()


def test_space_without_persistent_storage_warns(tmp_path, monkeypatch):
    settings, _ = parse_settings(["--session", str(tmp_path / "s")], env={})
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert space_warning(settings) is None
    monkeypatch.setenv("SPACE_ID", "someone/hitl")
    assert "persistent storage" in space_warning(settings)
    settings.session_dir = Path("/data/session")
    assert space_warning(settings) is None


def test_who_is_admin_without_logins(tmp_path):
    """Only a launch for this machine alone makes anonymous callers admins; a Space, a share
    link or a public address makes them labelers; logins decide where there are some."""
    from hitl.access import Access

    def anonymous(argv, env=None):
        settings, _ = parse_settings(["--session", str(tmp_path / "s"), *argv], env=env or {})
        return Access.from_settings(settings).anonymous_role

    assert anonymous([]) == "admin"  # python app.py: the quick start
    assert anonymous(["--host", "0.0.0.0", "--no-rest"]) == "labeler"
    assert anonymous(["--share", "--allow-anonymous"]) == "labeler"
    assert anonymous([], {"SPACE_ID": "someone/hitl"}) == "labeler"
    assert anonymous(["--auth", "ann:pw"]) == "labeler"
    owner = parse_settings(["--session", str(tmp_path / "s")], env={
        "SPACE_ID": "someone/hitl", "SPACE_AUTHOR_NAME": "someone", "OAUTH_CLIENT_ID": "x"})[0]
    access = Access.from_settings(owner)
    assert access.hf.role_of("someone") == "admin" and access.hf.role_of("eve") == "labeler"
    assert access.anonymous_role == "labeler"


def test_hf_users_on_a_space_without_hf_oauth_is_one_line(tmp_path, capsys):
    env = {"SPACE_ID": "someone/hitl", "HITL_HF_USERS": "bob"}
    with pytest.raises(SystemExit) as stop:
        parse_settings(["--session", str(tmp_path / "s")], env=env)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "hf_oauth: true" in err
    ok, _ = parse_settings(["--session", str(tmp_path / "s")], env=env | {"OAUTH_CLIENT_ID": "x"})
    assert ok.hf_users == ["bob"] and ok.hf_oauth
