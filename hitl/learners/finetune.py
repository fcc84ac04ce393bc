"""Fine-tune mode: a timm model trained end to end, for domains where frozen features are weak.

Training a whole network is slow on a CPU, so each step is a short round (a few optimiser
steps on a sample of the labels) followed by predictions for a window of unlabeled images;
the window rotates so every image is covered over time. After a change it trains a few
rounds, finishes one pass of predictions, then idles until the next label.
"""
from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
import pandas as pd
import torch
from PIL import Image

from hitl import metrics
from hitl.backbones import create_model, pick_device
from hitl.imaging import ImageError, MaskValues, load_image
from hitl.ml import heads
from hitl.ml.finetune import ClassifierFinetuner, SegFinetuner
from hitl.settings import Settings
from hitl.store import Store

ROUNDS_PER_CHANGE = 4
STEPS_PER_ROUND = 8
SAMPLE_PER_ROUND = 64
WINDOW = 48
VAL_LIMIT = 64
IMAGE_CACHE = 1024     # decoded, shrunk images kept in memory for training
CACHE_SIDE = 320


class _FinetuneBase:
    kind = ""

    def __init__(self, settings: Settings, store: Store, trainer):
        self.settings, self.store, self.trainer = settings, store, trainer
        self.device = pick_device(settings.device)
        self.name = settings.finetune_model
        self.class_ids: list[int] = []
        self.mask_values = MaskValues(())  # stored mask values -> positions of class_ids
        self.model = None
        self.version: int | None = None
        self.rounds_left = 0
        self.cursor = 0
        self._images: OrderedDict[int, object] = OrderedDict()
        self._warned = False
        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in self.name)
        settings.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint = settings.checkpoints_dir / f"finetune-{self.kind}-{safe}.pt"
        trainer.update(device=str(self.device), backbone=self.name, weights_warning=None)

    def factory(self, name: str, **kwargs) -> torch.nn.Module:
        """Models come through hitl.backbones so weights/, the HF cache and the Hub are used."""
        loaded = create_model(name, self.settings.weights_dir, self.device,
                              pretrained=self.settings.pretrained, **kwargs)
        if loaded.warning:
            self.trainer.update(weights_warning=loaded.warning)
        return loaded.model

    def image(self, image_id: int):
        """Decoded and shrunk once, kept in a bounded cache; None when unreadable."""
        if image_id in self._images:
            self._images.move_to_end(image_id)
            return self._images[image_id]
        row = self.store.image(image_id)
        try:
            img = load_image(row.path, self.settings.max_image_pixels)
        except ImageError as exc:
            self.store.mark_unreadable(image_id, str(exc))
            return None
        img.thumbnail((CACHE_SIDE, CACHE_SIDE))
        self._images[image_id] = img
        while len(self._images) > IMAGE_CACHE:
            self._images.popitem(last=False)
        return img

    def _sync_classes(self) -> list[int]:
        rows = self.store.classes()
        self.mask_values = MaskValues.of(rows)
        ids = [c.id for c in rows]
        if self.class_ids and ids[:len(self.class_ids)] != self.class_ids:
            self.model = None  # removed or reordered: columns no longer mean the same
            self.checkpoint.unlink(missing_ok=True)
        elif self.model is not None and len(ids) != len(self.class_ids):
            self.model.set_num_classes(len(ids))
        self.class_ids = ids
        return ids

    def step(self, changed: bool) -> bool:
        class_ids = self._sync_classes()
        if len(class_ids) < 2 or not self._has_labels():
            return False
        if self.model is None:
            self.model = self._load_or_create(len(class_ids))
        if changed:
            self.rounds_left = ROUNDS_PER_CHANGE
        if self.rounds_left > 0:
            self.rounds_left -= 1
            self._round(class_ids)
            self.cursor = 0
        more_windows = self._predict_window()
        return self.rounds_left > 0 or more_windows

    def _round(self, class_ids: list[int]) -> None:
        start = time.perf_counter()
        self.trainer.update(state="training", message=f"fine-tuning {self.name}")
        n_train = self._train_round(class_ids)
        self.model.save(self.checkpoint)
        version = self.store.next_model_version()
        self.version = version
        self._record(version, class_ids, n_train)
        self.trainer.update(model_version=version, last_trained_at=time.time(),
                            last_train_seconds=time.perf_counter() - start, state="idle",
                            message=f"model v{version} (fine-tune) on {n_train} labels")

    def _load_or_create(self, k: int):
        raise NotImplementedError

    def _has_labels(self) -> bool:
        raise NotImplementedError

    def _train_round(self, class_ids: list[int]) -> int:
        raise NotImplementedError

    def _record(self, version: int, class_ids: list[int], n_train: int) -> None:
        raise NotImplementedError

    def _predict_window(self) -> bool:
        raise NotImplementedError

    def _sample(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) <= SAMPLE_PER_ROUND:
            return ids
        return np.random.default_rng().choice(ids, SAMPLE_PER_ROUND, replace=False)

    def model_state(self) -> dict | None:
        if self.model is None or self.version is None or not self.checkpoint.exists():
            return None
        names = {c.id: c.name for c in self.store.classes()}
        ckpt = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        return {"task": self.task, "mode": "finetune",
                "classes": [names[c] for c in self.class_ids if c in names],
                "backbone": self.name, "preprocessing": self.preprocessing(),
                "head": ckpt, "model_version": self.version}


class FinetuneClassifier(_FinetuneBase):
    kind = "cls"
    task = "classification"

    def preprocessing(self) -> dict:
        return {"input_size": self.model.input_size}

    def _load_or_create(self, k: int) -> ClassifierFinetuner:
        if self.checkpoint.exists():
            model = ClassifierFinetuner.load(self.checkpoint, self.device, self.factory)
            model.set_num_classes(k)
            return model
        return ClassifierFinetuner(self.name, k, self.device, model_factory=self.factory)

    def _has_labels(self) -> bool:
        return len(self.store.labeled_pairs()[0]) > 0

    def _xy(self, ids: np.ndarray, cls: np.ndarray, class_ids: list[int]):
        index = {c: i for i, c in enumerate(class_ids)}
        images, labels = [], []
        for image_id, class_id in zip(ids.tolist(), cls.tolist()):
            img = self.image(image_id)
            if img is not None and class_id in index:
                images.append(img)
                labels.append(index[class_id])
        return images, labels

    def _train_round(self, class_ids: list[int]) -> int:
        ids, cls = self.store.labeled_pairs("train")
        if len(ids) == 0:
            ids, cls = self.store.labeled_pairs("val")
        pick = np.isin(ids, self._sample(ids))
        images, labels = self._xy(ids[pick], cls[pick], class_ids)
        if images:
            self.model.train_steps(images, labels, STEPS_PER_ROUND)
        return len(ids)

    def _record(self, version: int, class_ids: list[int], n_train: int) -> None:
        ids, cls = self.store.labeled_pairs("val")
        images, labels = self._xy(ids[:VAL_LIMIT], cls[:VAL_LIMIT], class_ids)
        truth = np.asarray(labels, dtype=np.int64)
        pred = self.model.predict_proba(images).argmax(1) if images else truth
        self.store.record_model(
            version, "classification", self.name, "finetune",
            int(len(self.store.labeled_pairs()[0])),
            val_accuracy=metrics.accuracy(truth, pred),
            metrics={"confusion": metrics.confusion(truth, pred, len(class_ids)),
                     "class_ids": class_ids, "n_train": n_train, "n_val": int(truth.size)})

    def _predict_window(self) -> bool:
        """Unlabeled images first, in a rotating window, so all get covered over time."""
        candidates = self.store.candidates("classification", "")["ids"]
        if self.cursor >= len(candidates):
            return False
        window = candidates[self.cursor:self.cursor + WINDOW]
        self.cursor += len(window)
        good, images = [], []
        for image_id in window.tolist():
            img = self.image(image_id)
            if img is not None:
                good.append(image_id)
                images.append(img)
        if images:
            probs = self.model.predict_proba(images)
            pred, prob, margin, entropy = heads.prediction_stats(probs)
            lookup = np.asarray(self.class_ids, dtype=np.int64)
            self.store.write_predictions(pd.DataFrame({
                "image_id": np.asarray(good, np.int64), "model_version": self.version,
                "class_id": lookup[pred], "probability": prob, "margin": margin,
                "entropy": entropy}), replace_all=False)
        return self.cursor < len(candidates)


class FinetuneSegmenter(_FinetuneBase):
    kind = "seg"
    task = "segmentation"

    def preprocessing(self) -> dict:
        return {"size": self.model.size}

    def _load_or_create(self, k: int) -> SegFinetuner:
        if self.checkpoint.exists():
            model = SegFinetuner.load(self.checkpoint, self.device, self.factory)
            model.set_num_classes(k)
            return model
        return SegFinetuner(self.name, k, self.device, model_factory=self.factory)

    def _has_labels(self) -> bool:
        return len(self.store.masked_ids()) > 0

    def _positions(self, image_id: int, class_ids: list[int]) -> np.ndarray | None:
        mask = self.store.mask(image_id)
        if mask is None:
            return None
        return self.mask_values.to_positions(mask)

    def _pairs(self, ids: np.ndarray, class_ids: list[int]):
        images, masks = [], []
        for image_id in ids.tolist():
            img = self.image(image_id)
            positions = self._positions(image_id, class_ids)
            if img is None or positions is None:
                continue
            # the cached image is shrunk: bring the mask to the same size, nearest
            small = np.asarray(Image.fromarray(positions).resize(img.size, Image.NEAREST))
            images.append(img)
            masks.append(small)
        return images, masks

    def _train_round(self, class_ids: list[int]) -> int:
        ids = self.store.masked_ids("train")
        if len(ids) == 0:
            ids = self.store.masked_ids("val")
        images, masks = self._pairs(self._sample(ids), class_ids)
        if images:
            self.model.train_steps(images, masks, STEPS_PER_ROUND)
        return len(ids)

    def _record(self, version: int, class_ids: list[int], n_train: int) -> None:
        iou = metrics.IoUAccumulator(len(class_ids))
        for image_id in self.store.masked_ids("val")[:VAL_LIMIT].tolist():
            row = self.store.image(image_id)
            positions = self._positions(image_id, class_ids)
            try:
                img = load_image(row.path, self.settings.max_image_pixels)
            except ImageError:
                continue
            iou.add(positions, self.model.predict_mask(img))
        self.store.record_model(
            version, "segmentation", self.name, "finetune", int(len(self.store.masked_ids())),
            val_miou=iou.mean(), metrics={"per_class_iou": iou.per_class(),
                                          "class_ids": class_ids, "n_train": n_train})

    def _predict_window(self) -> bool:
        candidates = self.store.candidates("segmentation", "")["ids"]
        if self.cursor >= len(candidates):
            return False
        window = candidates[self.cursor:self.cursor + WINDOW // 4]
        self.cursor += len(window)
        rows = []
        for image_id in window.tolist():
            img = self.image(image_id)
            if img is None:
                continue
            probs = self.model.predict_proba(img)
            k = probs.shape[0]
            flat = probs.reshape(k, -1)
            entropy = float((-(flat * np.log(np.clip(flat, 1e-8, 1))).sum(0)).mean())
            fractions = np.bincount(flat.argmax(0), minlength=k) / flat.shape[1]
            rows.append((image_id, self.version, entropy, fractions.astype(float).tolist()))
        if rows:
            self.store.write_seg_predictions(pd.DataFrame(
                rows, columns=["image_id", "model_version", "entropy", "fractions"]),
                replace_all=False)
        return self.cursor < len(candidates)

    def predicted_mask(self, image_id: int) -> dict | None:
        if self.model is None or self.version is None:
            return None
        row = self.store.image(image_id)
        if row is None or not row.readable:
            return None
        try:
            img = load_image(row.path, self.settings.max_image_pixels)
        except ImageError as exc:
            self.store.mark_unreadable(image_id, str(exc))
            return None
        mask = self.model.predict_mask(img)
        k = len(self.class_ids)
        fractions = np.bincount(mask.ravel(), minlength=k + 1)[1:k + 1] / mask.size
        return {"mask": mask, "fractions": fractions.tolist(), "model_version": self.version,
                "class_ids": list(self.class_ids)}

