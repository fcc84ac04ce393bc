"""Pure torch: a timm classifier, or a timm encoder with a light decoder for masks, trained end
to end from PIL images and (partial) masks. Nothing here knows about sessions or the store.

The trainer thread calls `train_steps` a few steps at a time between label updates, so an object
keeps its model and optimizer across calls and everything it needs to resume lives in one file.
Models are built through a `model_factory(name, **timm_kwargs)` so the app's weight loading
(local file, HF cache, Hub) is used; the default builds a random-init timm model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL.Image
import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from hitl.atomic import atomic_file
from hitl.imaging import as_rgb

ModelFactory = Callable[..., nn.Module]


def default_factory(name: str, **kw) -> nn.Module:
    return timm.create_model(name, pretrained=False, **kw)


def _norm_stats(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std the backbone was trained with (ImageNet's when the model does not say)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", timm.data.IMAGENET_DEFAULT_MEAN)), tuple(
        cfg.get("std", timm.data.IMAGENET_DEFAULT_STD)
    )


def _grow_rows(layer: nn.Module, k: int) -> nn.Module:
    """A copy of a Linear / Conv2d output layer with k outputs; keeps the first min(k, old) rows."""
    if isinstance(layer, nn.Linear):
        new = nn.Linear(layer.in_features, k, bias=layer.bias is not None)
    elif isinstance(layer, nn.Conv2d):
        new = nn.Conv2d(
            layer.in_channels,
            k,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            bias=layer.bias is not None,
        )
    else:
        raise TypeError(f"cannot resize a {type(layer).__name__} output layer")
    new = new.to(layer.weight.device, layer.weight.dtype)
    m = min(k, layer.weight.shape[0])
    with torch.no_grad():
        new.weight[:m] = layer.weight[:m]
        if layer.bias is not None:
            new.bias[:m] = layer.bias[:m]
    return new


class Finetuner:
    """What both finetuners share: device, optimizer, lock, autocast, and the checkpoint (one
    file: the constructor's arguments and the model's state_dict)."""

    model: nn.Module
    name: str
    num_classes: int
    kind = ""          # the checkpoint's "kind"
    size_field = ""    # the checkpoint's field for the input size (kept for old checkpoints)
    default_size = 0   # the side the model sees, in pixels

    def __init__(self, name: str, num_classes: int, device: torch.device,
                 size: int | None = None, model_factory: ModelFactory | None = None,
                 lr: float = 1e-3):
        """Build the model (`_build`, per kind) and everything that trains it."""
        self.name, self.num_classes, self.lr = name, num_classes, lr
        self.size = self.default_size if size is None else int(size)
        self.model = self._build(model_factory or default_factory)
        self.device = torch.device(device)
        self.model.to(self.device)
        self._lock = threading.RLock()  # the trainer thread trains while a reader may predict
        self._rng = np.random.default_rng(int(torch.randint(2**31, ())))  # torch.manual_seed
        self._new_optimizer()

    def _build(self, factory: ModelFactory) -> nn.Module:
        raise NotImplementedError

    def save(self, path: Path) -> None:
        with self._lock:
            record = {"kind": self.kind, "name": self.name, "num_classes": self.num_classes,
                      self.size_field: self.size, "lr": self.lr,
                      "state_dict": self.model.state_dict()}
            with atomic_file(path) as tmp:
                torch.save(record, tmp)

    @classmethod
    def from_checkpoint(cls, ckpt: dict, device: torch.device,
                        model_factory: ModelFactory | None = None) -> Finetuner:
        self = cls(ckpt["name"], ckpt["num_classes"], device, ckpt[cls.size_field],
                   model_factory, ckpt.get("lr", 1e-3))
        self.model.load_state_dict(ckpt["state_dict"])
        return self

    @classmethod
    def load(cls, path: Path, device: torch.device,
             model_factory: ModelFactory | None = None) -> Finetuner:
        return cls.from_checkpoint(torch.load(path, map_location="cpu", weights_only=True),
                                   device, model_factory)


    def _new_optimizer(self) -> None:
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=1e-4)

    def _autocast(self):
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"
        )

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """float32 logits of a batch (bfloat16 autocast on CUDA)."""
        with self._autocast():
            return self.model(x.to(self.device)).float()

    def _train_loop(self, n: int, steps: int, batch_size: int,
                    loss_of: Callable[[np.ndarray], torch.Tensor]) -> float:
        """`steps` AdamW steps, each on a random batch of the n examples (indices to loss_of);
        returns the mean loss. A batch has at least 2 examples, repeated when fewer exist:
        BatchNorm needs 2."""
        losses = []
        with self._lock:
            self.model.train()
            for _ in range(steps):
                idx = self._rng.choice(n, size=max(2, min(batch_size, n)), replace=n < 2)
                loss = loss_of(idx)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                losses.append(float(loss.detach()))
        return float(np.mean(losses)) if losses else float("nan")


# ------------------------------------------------------------------------------- classification


class ClassifierFinetuner(Finetuner):
    """A timm classifier trained end to end on the labeled images."""

    kind, size_field, default_size = "classifier", "input_size", 224

    def _build(self, factory: ModelFactory) -> nn.Module:
        model = factory(self.name, num_classes=self.num_classes)
        mean, std = _norm_stats(model)
        input_size = self.size
        to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
        self.train_transform = v2.Compose(
            [
                v2.RandomResizedCrop(
                    input_size, scale=(0.6, 1.0), ratio=(3 / 4, 4 / 3), antialias=True
                ),
                v2.RandomHorizontalFlip(),
                v2.RandomRotation(10),
                *to_tensor,
            ]
        )
        self.eval_transform = v2.Compose(
            [v2.Resize((input_size, input_size), antialias=True), *to_tensor]
        )
        return model

    def train_steps(
        self, images: list[PIL.Image.Image], labels: list[int], steps: int, batch_size: int = 16
    ) -> float:
        """`steps` AdamW steps on random augmented batches; returns the mean loss.

        The loss is class-balanced (weights 1 / count) so a rare class is not drowned out.
        Batches have at least 2 images (repeats when fewer are labeled): BatchNorm needs 2.
        """
        y_all = torch.as_tensor(labels, dtype=torch.long)
        counts = torch.bincount(y_all, minlength=self.num_classes).float()
        class_weight = torch.where(counts > 0, 1.0 / counts.clamp_min(1), 0.0)
        class_weight = (class_weight * (counts > 0).sum() / class_weight.sum()).to(self.device)

        def loss(idx: np.ndarray) -> torch.Tensor:
            x = torch.stack([self.train_transform(as_rgb(images[i])) for i in idx])
            logits = self._forward(x)
            return F.cross_entropy(logits, y_all[idx].to(self.device), weight=class_weight)
        return self._train_loop(len(images), steps, batch_size, loss)

    @torch.no_grad()
    def predict_proba(self, images: list[PIL.Image.Image], batch_size: int = 32) -> np.ndarray:
        """(N, K) float32 class probabilities with the eval transform (whole image, resized)."""
        out = []
        with self._lock:
            self.model.eval()
            for i in range(0, len(images), batch_size):
                x = torch.stack(
                    [self.eval_transform(as_rgb(im)) for im in images[i : i + batch_size]]
                ).to(self.device)
                with self._autocast():
                    logits = self.model(x)
                out.append(torch.softmax(logits.float(), 1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.num_classes), np.float32)

    def set_num_classes(self, k: int) -> None:
        """A class was added (or removed): resize the classifier, keeping the learned rows."""
        with self._lock:
            if k == self.num_classes:
                return
            head = self.model.get_classifier()
            new = _grow_rows(head, k)
            self.model.reset_classifier(k)  # sets num_classes and puts a fresh head in place
            current = self.model.get_classifier()
            for parent in self.model.modules():  # swap the fresh head for the grown copy
                for child_name, child in parent.named_children():
                    if child is current:
                        setattr(parent, child_name, new)
            self.num_classes = k
            self._new_optimizer()


# ------------------------------------------------------------------------------------ segmentation


class SegModel(nn.Module):
    """A timm features_only encoder + a light decoder.

    Each level -> 1x1 conv to a common width -> upsample to the finest level -> sum -> ReLU ->
    3x3 conv to K logits -> upsample to the input size. Small enough to train on a CPU.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, width: int = 64):
        super().__init__()
        self.encoder = encoder
        self.lateral = nn.ModuleList(
            nn.Conv2d(c, width, 1) for c in encoder.feature_info.channels()
        )
        self.classifier = nn.Conv2d(width, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        size = max((f.shape[-2:] for f in feats), key=lambda s: s[0] * s[1])
        y = sum(
            F.interpolate(lat(f), size=size, mode="bilinear", align_corners=False)
            for lat, f in zip(self.lateral, feats, strict=True)
        )
        return F.interpolate(
            self.classifier(F.relu(y)), size=x.shape[-2:], mode="bilinear", align_corners=False
        )


class SegFinetuner(Finetuner):
    """Semantic segmentation trained end to end from partial masks (0 = unlabeled)."""

    kind, size_field, default_size = "segmentation", "size", 256

    def _build(self, factory: ModelFactory) -> nn.Module:
        """A timm features_only encoder (self.name) under SegModel's decoder."""
        backbone = factory(self.name, features_only=True)
        mean, std = _norm_stats(backbone)
        size = self.size
        self.resize = v2.Resize((size, size), antialias=True)  # nearest for Mask tv_tensors
        self.augment = v2.Compose(
            [v2.RandomHorizontalFlip(), v2.RandomRotation(10)]
        )  # fill 0 = unlabeled
        self.to_input = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
        return SegModel(backbone, self.num_classes)

    def _pair(self, image: PIL.Image.Image, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Resized, jointly augmented (image, target); target = class index, -1 = unlabeled."""
        image = as_rgb(image)
        mask = np.asarray(mask)
        if mask.shape != (image.height, image.width):
            raise ValueError(
                f"mask {mask.shape} does not match image {(image.height, image.width)}"
            )
        img = tv_tensors.Image(v2.functional.pil_to_tensor(image))
        m = tv_tensors.Mask(torch.from_numpy(mask.astype(np.int64))[None])
        img, m = self.augment(*self.resize(img, m))
        target = m[0] - 1
        target[(target < 0) | (target >= self.num_classes)] = -1
        return self.to_input(img.as_subclass(torch.Tensor)), target.as_subclass(torch.Tensor)

    def train_steps(
        self,
        images: list[PIL.Image.Image],
        masks: list[np.ndarray],
        steps: int,
        batch_size: int = 4,
    ) -> float:
        """`steps` AdamW steps of cross-entropy over labeled pixels only; returns the mean loss."""

        def loss(idx: np.ndarray) -> torch.Tensor:
            pairs = [self._pair(images[i], masks[i]) for i in idx]
            logits = self._forward(torch.stack([p[0] for p in pairs]))
            y = torch.stack([p[1] for p in pairs]).to(self.device)
            total = F.cross_entropy(logits, y, ignore_index=-1, reduction="sum")
            return total / (y >= 0).sum().clamp_min(1)
        return self._train_loop(len(images), steps, batch_size, loss)

    @torch.no_grad()
    def predict_proba(self, image: PIL.Image.Image) -> np.ndarray:
        """(K, H, W) float32 class probabilities at the image's original size."""
        image = as_rgb(image)
        x = self.to_input(self.resize(v2.functional.pil_to_tensor(image)))[None].to(self.device)
        with self._lock:
            self.model.eval()
            with self._autocast():
                logits = self.model(x)
        logits = F.interpolate(
            logits.float(), size=(image.height, image.width), mode="bilinear", align_corners=False
        )
        return torch.softmax(logits[0], 0).cpu().numpy()

    def predict_mask(self, image: PIL.Image.Image) -> np.ndarray:
        """(H, W) uint8 mask with values 1..K at the image's original size."""
        return (self.predict_proba(image).argmax(0) + 1).astype(np.uint8)

    def set_num_classes(self, k: int) -> None:
        """A class was added (or removed): resize the output conv, keeping the learned rows."""
        with self._lock:
            if k == self.num_classes:
                return
            self.model.classifier = _grow_rows(self.model.classifier, k)
            self.num_classes = k
            self._new_optimizer()
