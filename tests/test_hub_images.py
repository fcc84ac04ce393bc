"""hf://datasets/... image sources: parsing and downloading through an injected fake Hub."""

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import errors
from huggingface_hub.utils import filter_repo_objects

from hitl.hub_images import HubDatasetRef, parse_hf_uri, resolve_image_source


def http_error(cls):
    """A Hub HTTP error as huggingface_hub raises it (it only reads headers and request)."""
    return cls("404 Client Error", response=SimpleNamespace(headers={}, request=None))


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("hf://datasets/owner/name", HubDatasetRef("owner/name", None, None)),
        ("hf://datasets/owner/name/", HubDatasetRef("owner/name", None, None)),
        ("hf://datasets/o-1/n_a.me/images", HubDatasetRef("o-1/n_a.me", "images", None)),
        ("hf://datasets/owner/name/a/b/", HubDatasetRef("owner/name", "a/b", None)),
        ("hf://datasets/owner/name@v1", HubDatasetRef("owner/name", None, "v1")),
        ("hf://datasets/owner/name/images@main", HubDatasetRef("owner/name", "images", "main")),
        (
            "hf://datasets/owner/name/images@refs/pr/3",
            HubDatasetRef("owner/name", "images", "refs/pr/3"),
        ),
        (
            "hf://datasets/owner/name@refs%2Fpr%2F3/images",
            HubDatasetRef("owner/name", "images", "refs/pr/3"),
        ),
    ],
)
def test_parse_hf_uri(uri, expected):
    assert parse_hf_uri(uri) == expected


@pytest.mark.parametrize(
    "source", ["/data/images", "images", "", "s3://bucket/x", "https://hf.co/datasets/a/b"]
)
def test_non_hf_sources_are_not_parsed(source):
    assert parse_hf_uri(source) is None


@pytest.mark.parametrize(
    "uri, message",
    [
        ("hf://models/owner/name", "only datasets"),
        ("hf://spaces/owner/name", "only datasets"),
        ("hf://owner/name", "hf://datasets/OWNER/NAME"),
        ("hf://datasets/owner", "missing OWNER/NAME"),
        ("hf://datasets//name", "missing OWNER/NAME"),
        ("hf://datasets/owner/name@", "empty revision"),
        ("hf://datasets/owner/na me", "not a valid Hub name"),
        ("hf://datasets/-owner/name", "not a valid Hub name"),
        ("hf://datasets/owner/name/../x", "'..'"),
    ],
)
def test_bad_hf_uris(uri, message):
    with pytest.raises(ValueError, match=message):
        parse_hf_uri(uri)


@pytest.fixture
def hub(tmp_path):
    """A stand-in for the Hub: one dataset repo as a local folder, plus a record of each call."""
    repo = tmp_path / "hub" / "owner" / "pets"
    (repo / "images" / "cats").mkdir(parents=True)
    (repo / "images" / "a.jpg").write_bytes(b"jpg")
    (repo / "images" / "cats" / "b.PNG").write_bytes(b"png")
    (repo / "top.png").write_bytes(b"png")
    (repo / "README.md").write_text("# pets")
    calls = []

    def download(*, repo_id, repo_type, revision, local_dir, allow_patterns):
        calls.append(
            dict(
                repo_id=repo_id,
                repo_type=repo_type,
                revision=revision,
                local_dir=local_dir,
                allow_patterns=allow_patterns,
            )
        )
        src = tmp_path / "hub" / repo_id
        if not src.is_dir():
            raise http_error(errors.RepositoryNotFoundError)
        files = [f.relative_to(src).as_posix() for f in src.rglob("*") if f.is_file()]
        for rel in filter_repo_objects(files, allow_patterns=allow_patterns):
            (Path(local_dir) / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / rel, Path(local_dir) / rel)
        return local_dir

    download.calls = calls
    return download


def test_non_hf_source_is_returned_unchanged(tmp_path, hub):
    assert resolve_image_source("/data/images", tmp_path / "cache", download=hub) == "/data/images"
    assert hub.calls == []


def test_subdir_is_downloaded_and_returned(tmp_path, hub):
    cache = tmp_path / "cache"
    folder = resolve_image_source("hf://datasets/owner/pets/images@v2", cache, download=hub)
    (call,) = hub.calls
    assert call["repo_id"] == "owner/pets"
    assert call["repo_type"] == "dataset"
    assert call["revision"] == "v2"
    assert Path(call["local_dir"]) == cache / "owner--pets--v2"
    assert call["allow_patterns"] == ["images/**"]
    assert Path(folder) == cache / "owner--pets--v2" / "images"
    files = sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file())
    assert files == ["a.jpg", "cats/b.PNG"]


def test_whole_dataset_fetches_images_only(tmp_path, hub):
    cache = tmp_path / "cache"
    folder = resolve_image_source("hf://datasets/owner/pets", cache, download=hub)
    (call,) = hub.calls
    assert call["revision"] is None
    assert "*.jpg" in call["allow_patterns"] and "*.PNG" in call["allow_patterns"]
    assert Path(folder) == cache / "owner--pets"
    assert (Path(folder) / "top.png").is_file()
    assert not (Path(folder) / "README.md").exists()


def test_missing_subdir_is_a_clear_error(tmp_path, hub):
    with pytest.raises(RuntimeError, match="no folder 'dogs'"):
        resolve_image_source("hf://datasets/owner/pets/dogs", tmp_path / "cache", download=hub)


def test_not_found_names_dataset_and_token(tmp_path, hub):
    with pytest.raises(RuntimeError, match="owner/nope") as info:
        resolve_image_source("hf://datasets/owner/nope", tmp_path / "cache", download=hub)
    assert "check the name" in str(info.value) and "HF_TOKEN" in str(info.value)


def test_offline_error_says_check_the_network(tmp_path):
    def offline(**kwargs):
        raise errors.LocalEntryNotFoundError(
            "Got: ConnectError: [Errno -2] Name or service not known"
        )

    with pytest.raises(RuntimeError) as info:
        resolve_image_source(
            "hf://datasets/owner/pets/images", tmp_path / "cache", download=offline
        )
    msg = str(info.value)
    assert "'owner/pets'" in msg and "network" in msg
    assert isinstance(info.value.__cause__, errors.LocalEntryNotFoundError)


def test_gated_and_unknown_errors(tmp_path):
    def gated(**kwargs):
        raise http_error(errors.GatedRepoError)

    def broken(**kwargs):
        raise OSError("disk full")

    with pytest.raises(RuntimeError, match="gated.*HF_TOKEN"):
        resolve_image_source("hf://datasets/owner/pets", tmp_path, download=gated)
    with pytest.raises(RuntimeError, match="disk full.*network"):
        resolve_image_source("hf://datasets/owner/pets", tmp_path, download=broken)


def test_bad_uri_is_not_downloaded(tmp_path, hub):
    with pytest.raises(ValueError, match="only datasets"):
        resolve_image_source("hf://models/owner/pets", tmp_path, download=hub)
    assert hub.calls == []
