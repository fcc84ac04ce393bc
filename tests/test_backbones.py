"""Backbone loading: every weight source, and the offline fallback, with real tiny timm models."""

import time
from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors.torch import save_file

from hitl.backbones import (
    BACKBONE_PRESETS,
    DEFAULT_BACKBONE,
    LoadedModel,
    create_model,
    find_local_weights,
    pick_device,
)

CPU = torch.device("cpu")
NAME = "test_vit.r160_in1k"
ARCH = "test_vit"


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path, monkeypatch):
    """Point the HF cache at an empty folder so the machine's own cache cannot leak in."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def offline(repo_id: str, filename: str) -> str:
    """The outside world when there is no network."""
    raise LocalEntryNotFoundError(f"cannot reach the Hub for {repo_id}/{filename}")


def save_random_weights(path: Path, name: str = ARCH) -> dict[str, torch.Tensor]:
    model = timm.create_model(name, pretrained=False)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return state


def assert_weights_equal(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert set(got) == set(state)
    for k, v in state.items():
        assert torch.equal(got[k].cpu(), v), k


def test_presets_are_timm_names():
    assert DEFAULT_BACKBONE in BACKBONE_PRESETS.values()
    for name in BACKBONE_PRESETS.values():
        assert timm.is_model(name)


def test_pick_device():
    assert pick_device("cpu") == CPU
    assert pick_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("banana")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_pick_device_unavailable_cuda_says_so():
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown model name"):
        create_model("no_such_model_xyz", Path("."), CPU)


def test_random_init_when_not_pretrained(tmp_path):
    loaded = create_model(ARCH, tmp_path, CPU, pretrained=False, num_classes=0)
    assert isinstance(loaded, LoadedModel)
    assert loaded.weights_source == "random init"
    assert loaded.warning is None
    assert not loaded.model.training
    assert loaded.model.num_classes == 0
    assert next(loaded.model.parameters()).device == CPU


def test_find_local_weights_order(tmp_path):
    assert find_local_weights(NAME, tmp_path) is None
    (tmp_path / f"{ARCH}.pth").write_bytes(b"x")
    assert find_local_weights(NAME, tmp_path) == tmp_path / f"{ARCH}.pth"
    (tmp_path / f"{NAME}.bin").write_bytes(b"x")
    assert find_local_weights(NAME, tmp_path) == tmp_path / f"{NAME}.bin"
    (tmp_path / f"{NAME}.safetensors").write_bytes(b"x")
    assert find_local_weights(NAME, tmp_path) == tmp_path / f"{NAME}.safetensors"


@pytest.mark.parametrize("stem", [NAME, ARCH])
def test_loads_local_file(tmp_path, stem):
    path = tmp_path / f"{stem}.safetensors"
    state = save_random_weights(path)
    loaded = create_model(NAME, tmp_path, CPU, hub_download=offline)
    assert loaded.weights_source.endswith(path.name)
    assert loaded.warning is None
    assert not loaded.model.training
    assert_weights_equal(loaded.model, state)


def test_local_file_with_timm_kwargs(tmp_path):
    state = save_random_weights(tmp_path / f"{ARCH}.safetensors")
    loaded = create_model(NAME, tmp_path, CPU, hub_download=offline, num_classes=0)
    assert loaded.model.num_classes == 0
    assert torch.equal(loaded.model.state_dict()["cls_token"], state["cls_token"])


def test_corrupt_local_file_falls_back_with_warning(tmp_path):
    bad = tmp_path / f"{NAME}.safetensors"
    bad.write_bytes(b"this is not a safetensors file")
    loaded = create_model(NAME, tmp_path, CPU, hub_download=offline)
    assert loaded.weights_source == "random init"
    assert loaded.warning is not None
    assert str(bad) in loaded.warning


def test_offline_gives_random_init_and_says_what_to_do(tmp_path):
    loaded = create_model(NAME, tmp_path, CPU, hub_download=offline)
    assert loaded.weights_source == "random init"
    warning = loaded.warning or ""
    assert f"{NAME}.safetensors" in warning
    assert str(tmp_path) in warning
    assert "HF_HOME" in warning
    assert "internet" in warning


def test_hub_download(tmp_path):
    hub_file = tmp_path / "downloaded" / "model.safetensors"
    state = save_random_weights(hub_file)
    asked = []

    def fake_hub(repo_id: str, filename: str) -> str:
        asked.append((repo_id, filename))
        return str(hub_file)

    loaded = create_model(NAME, tmp_path / "weights", CPU, hub_download=fake_hub)
    assert loaded.weights_source == "huggingface hub"
    assert loaded.warning is None
    assert asked == [("timm/test_vit.r160_in1k", "model.safetensors")]
    assert_weights_equal(loaded.model, state)


def test_hf_cache_is_used_before_the_hub(tmp_path, empty_hf_cache):
    snapshot = empty_hf_cache / "models--timm--test_vit.r160_in1k" / "snapshots" / "abc123"
    state = save_random_weights(snapshot / "model.safetensors")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")

    def hub_must_not_be_called(repo_id: str, filename: str) -> str:
        raise AssertionError("the Hub was asked although the cache has the file")

    loaded = create_model(ARCH, tmp_path, CPU, hub_download=hub_must_not_be_called)
    assert loaded.weights_source == "huggingface cache"
    assert_weights_equal(loaded.model, state)


def test_dynamic_img_size_only_where_supported(tmp_path):
    vit = create_model(ARCH, tmp_path, CPU, pretrained=False, dynamic_img_size=True)
    assert vit.model.dynamic_img_size is True
    cnn = create_model("test_resnet", tmp_path, CPU, pretrained=False, dynamic_img_size=True)
    assert cnn.weights_source == "random init"


def test_unreachable_hub_fails_fast_without_a_fake(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    loaded = create_model(NAME, tmp_path, CPU)
    assert time.monotonic() - start < 10
    assert loaded.weights_source == "random init"
    assert "Hugging Face Hub" in (loaded.warning or "")
