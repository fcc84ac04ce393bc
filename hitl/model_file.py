"""The trained model as one file that predicts anywhere: `load_model(path).predict(images)`.

The file is a `torch.save` of tensors, strings, numbers, lists and dicts only, so loading it
uses `torch.load(weights_only=True)`: opening a model file someone sent you cannot run code.

The backbone's weights are always stored in the file (88 MB for a ViT-S/16, about 1.2 GB for
a ViT-L). A random-init backbone (offline machine, tests) could not be re-created otherwise,
and even pretrained weights may be unreachable where the model is used (no network, no
weights/ folder); one self-contained file also cannot drift from what the trainer used.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from hitl.atomic import atomic_file
from hitl.tasks import get_task

FORMAT = "hitl-model"
FORMAT_VERSION = 1
REQUIRED = ("task", "mode", "classes", "backbone", "preprocessing", "head")


def _plain(value: Any) -> Any:
    """numpy -> tensors, recursively; what weights_only loading accepts and nothing else."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"a model file cannot hold a {type(value).__name__}")


def _check(state: dict) -> None:
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise ValueError(f"the model state lacks {', '.join(missing)}")
    get_task(state["task"])  # an unknown task raises (UnknownTask is a ValueError)
    if not state["classes"]:
        raise ValueError("the model has no classes")


def save_model(path: Path, state: dict) -> None:
    """Write the trainer's published state (plus its backbone's weights) atomically to `path`."""
    _check(state)
    loaded = state.get("loaded_model")  # the trainer's LoadedModel: not saved, its weights are
    record = {k: v for k, v in state.items() if k != "loaded_model"}
    if loaded is not None:
        record["backbone_state"] = loaded.model.state_dict()
        record.setdefault("backbone_weights", loaded.weights_source)
        record["timm_kwargs"] = {"num_classes": 0,
                                 "dynamic_img_size": bool(getattr(loaded.model,
                                                                  "dynamic_img_size", False))}
    if "backbone_state" not in record and record["mode"] == "frozen":
        raise ValueError("the model state has no backbone weights (no 'loaded_model' nor "
                         "'backbone_state'), so the backbone could not be re-created")
    record.update(format=FORMAT, format_version=FORMAT_VERSION)
    record = _plain(record)
    with atomic_file(path) as tmp:
        torch.save(record, tmp)


def read_state(path: Path) -> dict:
    """The stored state, checked; refuses files that are not hitl models or are newer."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable hitl model file ({type(exc).__name__})") \
            from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a hitl model file")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer hitl; upgrade to load it")
    _check(state)
    return state


class Predictor:
    """A loaded model: PIL images (or paths) in, labels or masks out.

    The task's subclass (named by its registered task, hitl/tasks/) says which head, which
    features and which finetuner it uses, and what a prediction looks like."""

    head_class: str = ""          # hitl.ml.heads class of the frozen head
    finetuner_class: str = ""     # hitl.ml.finetune class of the fine-tuned model
    timm_kwargs: dict = {}        # extra timm arguments for the frozen backbone

    def __init__(self, state: dict, device: str = "cpu", weights_dir: Path = Path("weights")):
        from hitl.backbones import pick_device

        self.task: str = state["task"]
        self.mode: str = state["mode"]
        self.classes: list[str] = list(state["classes"])
        self.model_version: int | None = state.get("model_version")
        self.preprocessing: dict = dict(state["preprocessing"])
        self.warning: str | None = None
        self.device = pick_device(device)
        if self.mode == "finetune":
            self._init_finetune(state["head"])
        else:
            self._init_frozen(state, Path(weights_dir))

    def feature_key(self) -> str:
        """The feature cache key the trainer used, to warn when preprocessing differs."""
        return self.extractor.key

    def _init_frozen(self, state: dict, weights_dir: Path) -> None:
        """Backbone (stored weights) + FeatureExtractor + linear head, as the trainer ran them."""
        from hitl.backbones import create_model
        from hitl.ml import heads
        from hitl.ml.features import FeatureExtractor

        kwargs = dict(state.get("timm_kwargs") or {"num_classes": 0}) | self.timm_kwargs
        stored = state.get("backbone_state")
        loaded = create_model(state["backbone"], weights_dir, self.device,
                              pretrained=stored is None, **kwargs)
        if stored is not None:
            loaded.model.load_state_dict(stored)
            loaded = dataclasses.replace(
                loaded, weights_source=state.get("backbone_weights", "file"), warning=None)
        self.warning = loaded.warning
        self.extractor = FeatureExtractor(loaded)
        self.long_side = int(self.preprocessing.get("long_side", 512))
        key = self.feature_key()
        if self.preprocessing.get("key", key) != key:
            self.warning = (f"preprocessing differs from training ({key} here, "
                            f"{self.preprocessing['key']} there): predictions may differ")
        head_state = {k: v.numpy() for k, v in state["head"].items()}
        self.head = getattr(heads, self.head_class).from_state(head_state)
        self._check_outputs(self.head.num_classes)

    def _init_finetune(self, ckpt: dict) -> None:
        """The finetuner's own checkpoint (name, sizes, whole-model state_dict)."""
        from hitl.ml import finetune

        self.finetuner = getattr(finetune, self.finetuner_class).from_checkpoint(ckpt,
                                                                               self.device)
        self._check_outputs(int(ckpt["num_classes"]))

    def _check_outputs(self, outputs: int) -> None:
        if outputs != len(self.classes):
            raise ValueError(f"the model has {outputs} outputs for {len(self.classes)} classes")

    def _images(self, images: list) -> list[Image.Image]:
        from hitl.imaging import load_image
        return [im if isinstance(im, Image.Image) else load_image(im) for im in images]

    def predict(self, images: list[Image.Image | str | Path]) -> list[dict]:
        """One dict per image (see the task's subclass)."""
        images = self._images(images)
        return self._predict(images) if images else []

    def _predict(self, images: list[Image.Image]) -> list[dict]:
        raise NotImplementedError


class ClassificationPredictor(Predictor):
    head_class, finetuner_class = "LinearHead", "ClassifierFinetuner"

    def _predict(self, images: list[Image.Image]) -> list[dict]:
        """{"label", "probability", "probabilities"} per image."""
        probs = (self.finetuner.predict_proba(images) if self.mode == "finetune"
                 else self.head.predict_proba(self.extractor.global_features(images)))
        return [{"label": self.classes[int(p.argmax())], "probability": float(p.max()),
                 "probabilities": dict(zip(self.classes, map(float, p)))} for p in probs]


class SegmentationPredictor(Predictor):
    head_class, finetuner_class = "SegHead", "SegFinetuner"
    timm_kwargs = {"dynamic_img_size": True}

    def feature_key(self) -> str:
        return self.extractor.patch_key(self.long_side)

    def _predict(self, images: list[Image.Image]) -> list[dict]:
        """{"mask"}: (H, W) uint8, k = self.classes[k - 1], at the image's size."""
        if self.mode == "finetune":
            return [{"mask": self.finetuner.predict_mask(im)} for im in images]
        grids = self.extractor.patch_features(images, self.long_side)
        return [{"mask": self.head.predict_mask(grid, (im.height, im.width))[0]}
                for grid, im in zip(grids, images)]


def load_model(path: Path, device: str = "cpu", weights_dir: Path = Path("weights")) -> Predictor:
    """A Predictor from a model file written by save_model (or the page's model export)."""
    state = read_state(path)
    return get_task(state["task"]).predictor()(state, device=device,
                                                     weights_dir=weights_dir)
