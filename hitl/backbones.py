"""A timm backbone by name, with weights from weights/, the Hugging Face cache, or the Hub.

The tool must start on an offline machine: every way of getting pretrained weights is
tried in turn, and when all fail the model still comes up (random init) with a warning
that says, in plain words, what to do about it.
"""

from __future__ import annotations

import functools
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import huggingface_hub
import timm
import torch
from huggingface_hub.errors import RemoteEntryNotFoundError

# the presets live in settings, so the page reads them without importing torch
from hitl.settings import BACKBONE_PRESETS, DEFAULT_BACKBONE  # noqa: F401

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")
HUB_TIMEOUT_S = 5.0

HubDownload = Callable[[str, str], str]


def pick_device(requested: str = "auto") -> torch.device:
    """Resolve "auto" to the best device here; refuse a named device that is not present."""
    req = (requested or "auto").strip().lower()
    if req == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(req)
    except RuntimeError as e:
        raise ValueError(
            f"unknown device {requested!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from e
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {requested!r} was asked for but CUDA is not available on this "
                "machine (no NVIDIA GPU or a CPU-only torch build); use 'auto' or 'cpu'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {requested!r} was asked for but only "
                f"{torch.cuda.device_count()} CUDA device(s) exist"
            )
        return device
    if device.type == "mps":
        if not _mps_available():
            raise ValueError(
                f"device {requested!r} was asked for but Apple MPS is not available here; "
                "use 'auto' or 'cpu'"
            )
        return device
    raise ValueError(f"unsupported device {requested!r}: use 'auto', 'cpu', 'cuda' or 'mps'")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


@dataclass
class LoadedModel:
    """A ready model plus where its weights came from, so the UI can say so."""

    model: torch.nn.Module
    name: str
    weights_source: str
    warning: str | None
    device: torch.device


def architecture(name: str) -> str:
    """The timm architecture part of a name.

    'vit_small_patch16_dinov3.lvd1689m' -> 'vit_small_patch16_dinov3'."""
    return name.split(".", 1)[0]


def find_local_weights(name: str, weights_dir: Path) -> Path | None:
    """First existing weights_dir/<name><suffix>, then weights_dir/<architecture><suffix>."""
    weights_dir = Path(weights_dir)
    stems = [name] if architecture(name) == name else [name, architecture(name)]
    for stem in stems:
        for suffix in WEIGHT_SUFFIXES:
            path = weights_dir / f"{stem}{suffix}"
            if path.is_file():
                return path
    return None


def _default_hub_download(repo_id: str, filename: str) -> str:
    """Download a file from the Hub; offline fails in seconds, not after a minute of retries."""
    _check_hub_reachable(HUB_TIMEOUT_S)
    return huggingface_hub.hf_hub_download(repo_id, filename, etag_timeout=HUB_TIMEOUT_S)


def _check_hub_reachable(timeout: float) -> None:
    """huggingface_hub retries a dead network with back-off; one quick connect avoids that."""
    url = urlparse(huggingface_hub.constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(f"cannot reach {url.hostname}: {e}") from e


def _hub_repo(name: str) -> tuple[str, str | None] | None:
    """(repo_id, filename or None) of the model's pretrained weights on the Hub, if any."""
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # a name without a pretrained cfg
        return None
    if cfg is None or not cfg.hf_hub_id:
        return None
    return cfg.hf_hub_id, cfg.hf_hub_filename


def _split_revision(hub_id: str) -> tuple[str, str | None]:
    repo, _, revision = hub_id.partition("@")
    return repo, revision or None


def _find_in_hf_cache(name: str) -> Path | None:
    """The weight file of the model in the local Hugging Face cache; never goes online."""
    hub = _hub_repo(name)
    if hub is None:
        return None
    hub_id, filename = hub
    repo_id, revision = _split_revision(hub_id)
    for fname in [filename] if filename else HUB_FILENAMES:
        found = huggingface_hub.try_to_load_from_cache(repo_id, fname, revision=revision)
        if isinstance(found, str):
            return Path(found)
    return None


def _download_from_hub(name: str, hub_download: HubDownload) -> Path | None:
    """Ask the Hub for the weight file; a missing file tries the next name, anything else stops."""
    hub = _hub_repo(name)
    if hub is None:
        return None
    hub_id, filename = hub
    repo_id, _ = _split_revision(hub_id)
    last_error: Exception | None = None
    for fname in [filename] if filename else HUB_FILENAMES:
        try:
            return Path(hub_download(repo_id, fname))
        except RemoteEntryNotFoundError as e:  # this repo has no such file: try the next name
            last_error = e
    if last_error is not None:
        raise last_error
    return None


@functools.lru_cache(maxsize=64)
def _accepts_dynamic_img_size(name: str) -> bool:
    """Only ViT-like models take dynamic_img_size; built on the meta device, so it is free."""
    try:
        with torch.device("meta"):
            timm.create_model(name, pretrained=False, dynamic_img_size=True)
    except TypeError:
        return False
    except Exception:  # some other build problem: let the real build report it
        return True
    return True


def create_model(
    name: str,
    weights_dir: Path,
    device: torch.device,
    pretrained: bool = True,
    hub_download: HubDownload | None = None,
    **timm_kwargs: Any,
) -> LoadedModel:
    """Build `name` with the best weights reachable: weights/ file, HF cache, Hub, else random.

    `hub_download(repo_id, filename) -> local path` is injectable (tests stand in for the
    network with it). `dynamic_img_size=True` is dropped for architectures that do not take it
    (CNNs accept any input size anyway), so callers can pass it for every backbone.
    """
    if not timm.is_model(name):
        raise ValueError(f"unknown model name {name!r}: not a timm model (see timm.list_models())")
    if timm_kwargs.get("dynamic_img_size") and not _accepts_dynamic_img_size(name):
        timm_kwargs.pop("dynamic_img_size")

    base_overlay = dict(timm_kwargs.pop("pretrained_cfg_overlay", None) or {})

    def build(weights: Path | None) -> torch.nn.Module:
        if weights is None:
            return timm.create_model(
                name, pretrained=False, pretrained_cfg_overlay=base_overlay or None, **timm_kwargs
            )
        overlay = dict(base_overlay, file=str(weights))
        return timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay=overlay, **timm_kwargs
        )

    def done(model: torch.nn.Module, source: str, warning: str | None) -> LoadedModel:
        model = model.to(device).eval()
        return LoadedModel(
            model=model, name=name, weights_source=source, warning=warning, device=device
        )

    if not pretrained:
        return done(build(None), "random init", None)

    problems: list[str] = []
    local = find_local_weights(name, Path(weights_dir))
    if local is not None:
        try:
            return done(build(local), str(local), None)
        except Exception as e:
            log.warning("could not load %s: %s", local, e)
            problems.append(
                f"The weights file {local} could not be loaded ({type(e).__name__}: "
                f"{_short(e)}); it may be corrupt or for another model. Replace or remove it."
            )

    steps: list[tuple[str, Callable[[], Path | None]]] = [
        ("huggingface cache", lambda: _find_in_hf_cache(name)),
        (
            "huggingface hub",
            lambda: _download_from_hub(name, hub_download or _default_hub_download),
        ),
    ]
    for source, find in steps:
        try:
            path = find()
            if path is not None:
                warning = " ".join(problems) or None
                return done(build(path), source, warning)
        except Exception as e:
            log.info("no weights for %s from %s: %s", name, source, e)
            if source == "huggingface hub":
                problems.append(
                    "Downloading them from the Hugging Face Hub failed "
                    f"({type(e).__name__}: {_short(e)})."
                )
            else:
                problems.append(f"The Hugging Face cache copy could not be loaded ({_short(e)}).")

    return done(build(None), "random init", _offline_warning(name, Path(weights_dir), problems))


def _short(e: Exception, limit: int = 200) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return text[:limit]


def _offline_warning(name: str, weights_dir: Path, problems: list[str]) -> str:
    arch = architecture(name)
    hub = _hub_repo(name)
    cache_hint = f" that holds {hub[0]}" if hub else ""
    names = f"{name}.safetensors or {name}.pth"
    if arch != name:
        names += f" (or {arch}.safetensors / {arch}.pth)"
    return (
        f"No pretrained weights for {name} could be found, so the model uses RANDOM weights "
        "and its features and suggestions will be meaningless. "
        + (" ".join(problems) + " " if problems else "")
        + f"To fix it, do one of: put a file named {names} into {weights_dir}/ "
        f"(see {weights_dir}/README.md); or set HF_HOME to a Hugging Face cache{cache_hint}; "
        "or connect this machine to the internet. Then restart."
    )
