"""Fine-tune mode's learners: when the session's labels train a hitl.ml.finetune model, and
where its predictions go (the store for strategies, published masks for the page).

Training a whole network is slow on a CPU, so each step is a short round (a few optimiser
steps on a sample of the labels) followed by predictions for a window of unlabeled images;
the window rotates so every image is covered over time. After a change it trains a few
rounds, finishes one pass of predictions, then idles until the next label. The checkpoint
lives in the session, so a restart resumes the same model.
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
from hitl.imaging import ImageError, load_image
from hitl.learners.base import Learner, Publish, Report
from hitl.learners.published import StoredMasks
from hitl.ml import heads
from hitl.ml.finetune import ClassifierFinetuner, Finetuner, SegFinetuner
from hitl.settings import Settings
from hitl.store import Store
from hitl.tasks import get_task

ROUNDS_PER_CHANGE = 4
STEPS_PER_ROUND = 8
SAMPLE_PER_ROUND = 64
WINDOW = 48
VAL_LIMIT = 64
IMAGE_CACHE = 1024     # decoded, shrunk images kept in memory for training
CACHE_SIDE = 320


class _FinetuneBase(Learner):
    mode = "finetune"
    kind = ""                           # checkpoint file name part
    finetuner: type[Finetuner]          # the hitl.ml.finetune model it trains

    def __init__(self, settings: Settings, store: Store, report: Report, publish: Publish):
        super().__init__(settings, store, report, publish)
        self.device = pick_device(settings.device)
        self.name = settings.finetune_model
        self.model: Finetuner | None = None
        self.rounds_left = 0
        self.cursor = 0
        self._images: OrderedDict[int, object] = OrderedDict()
        self._masks: StoredMasks | None = None  # segmentation: what the page reads
        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in self.name)
        settings.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint = settings.checkpoints_dir / f"finetune-{self.kind}-{safe}.pt"
        report(device=str(self.device), backbone=self.name, weights_warning=None)

    def factory(self, name: str, **kwargs) -> torch.nn.Module:
        """Models come through hitl.backbones so weights/, the HF cache and the Hub are used."""
        loaded = create_model(name, self.settings.weights_dir, self.device,
                              pretrained=self.settings.pretrained, **kwargs)
        if loaded.warning:
            self.report(weights_warning=loaded.warning)
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

    def _images_of(self, ids) -> tuple[list[int], list]:
        """(readable ids, their cached images)."""
        good, images = [], []
        for image_id in ids:
            img = self.image(image_id)
            if img is not None:
                good.append(image_id)
                images.append(img)
        return good, images

    def _sync_classes(self) -> list[int]:
        ids = self._current_classes()
        if self.class_ids and ids[:len(self.class_ids)] != self.class_ids:
            self.model = None  # removed or reordered: columns no longer mean the same
            self.checkpoint.unlink(missing_ok=True)
            self._masks = None
            self.publish(masks=None)
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
        self._answer_asked()
        candidates = get_task(self.task).candidates(self.store, "")["ids"]
        if self.cursor < len(candidates):
            window = candidates[self.cursor:self.cursor + self.window]
            self.cursor += len(window)
            self._predict(*self._images_of(window.tolist()))
        return self.rounds_left > 0 or self.cursor < len(candidates)

    def _round(self, class_ids: list[int]) -> None:
        start = time.perf_counter()
        self.report(state="training", message=f"fine-tuning {self.name}")
        n_train = self._train_round(class_ids)
        self.model.save(self.checkpoint)
        version = self.store.next_model_version()
        self.version = version
        self._record(version, class_ids, n_train)
        self._trained(version, start, f"(fine-tune) on {n_train} labels")

    def _load_or_create(self, k: int) -> Finetuner:
        """The checkpoint of this session when there is one (resized to k classes)."""
        if self.checkpoint.exists():
            model = self.finetuner.load(self.checkpoint, self.device, self.factory)
            model.set_num_classes(k)
            return model
        return self.finetuner(self.name, k, self.device, model_factory=self.factory)

    def _sample(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) <= SAMPLE_PER_ROUND:
            return ids
        return np.random.default_rng().choice(ids, SAMPLE_PER_ROUND, replace=False)

    def model_state(self) -> dict | None:
        if self.model is None or self.version is None or not self.checkpoint.exists():
            return None
        ckpt = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        return {"task": self.task, "mode": self.mode, "classes": self._class_names(),
                "backbone": self.name, "preprocessing": self.preprocessing(),
                "head": ckpt, "model_version": self.version}

    # ---- what each task does differently ---------------------------------------------------
    window = WINDOW  # unlabeled images predicted per step, in a rotating window

    def preprocessing(self) -> dict:
        raise NotImplementedError

    def _has_labels(self) -> bool:
        raise NotImplementedError

    def _train_round(self, class_ids: list[int]) -> int:
        raise NotImplementedError

    def _record(self, version: int, class_ids: list[int], n_train: int) -> None:
        raise NotImplementedError

    def _predict(self, ids: list[int], images: list) -> None:
        """Publish predictions for these images."""
        raise NotImplementedError

    def _answer_asked(self) -> None:
        """Predict first what a page asked for and could not get yet (segmentation)."""


class FinetuneClassifier(_FinetuneBase):
    kind = "cls"
    task = "classification"
    finetuner = ClassifierFinetuner

    def preprocessing(self) -> dict:
        return {"input_size": self.model.size}

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
        if len(ids) == 0:  # only validation labels so far: this model's scores are not held-out
            ids, cls = self.store.labeled_pairs("val")
            self._saw_val = True
        pick = np.isin(ids, self._sample(ids))
        images, labels = self._xy(ids[pick], cls[pick], class_ids)
        if images:
            self.model.train_steps(images, labels, STEPS_PER_ROUND)
        return len(ids)

    def _record(self, version: int, class_ids: list[int], n_train: int) -> None:
        held_in = getattr(self, "_saw_val", False)
        ids, cls = self.store.labeled_pairs("val")
        images, labels = self._xy(ids[:VAL_LIMIT], cls[:VAL_LIMIT], class_ids)
        truth = np.asarray(labels, dtype=np.int64)
        pred = self.model.predict_proba(images).argmax(1) if images else truth
        self.store.record_model(
            version, self.task, self.name, self.mode,
            int(len(self.store.labeled_pairs()[0])),
            val_accuracy=None if held_in else metrics.accuracy(truth, pred),
            metrics={"confusion": None if held_in else
                     metrics.confusion(truth, pred, len(class_ids)),
                     "class_ids": class_ids, "n_train": n_train, "n_val": int(truth.size),
                     "held_out": not held_in})

    def _predict(self, ids: list[int], images: list) -> None:
        if not images:
            return
        pred, prob, margin, entropy = heads.prediction_stats(self.model.predict_proba(images))
        lookup = np.asarray(self.class_ids, dtype=np.int64)
        self.store.write_predictions(pd.DataFrame({
            "image_id": np.asarray(ids, np.int64), "model_version": self.version,
            "class_id": lookup[pred], "probability": prob, "margin": margin,
            "entropy": entropy}), replace_all=False)


class FinetuneSegmenter(_FinetuneBase):
    kind = "seg"
    task = "segmentation"
    finetuner = SegFinetuner
    window = WINDOW // 4

    def preprocessing(self) -> dict:
        return {"size": self.model.size}

    def _has_labels(self) -> bool:
        return len(self.store.masked_ids()) > 0

    def _positions(self, image_id: int) -> np.ndarray | None:
        mask = self.store.mask(image_id)
        return None if mask is None else self.mask_values.to_positions(mask)

    def _pairs(self, ids: np.ndarray):
        images, masks = [], []
        for image_id in ids.tolist():
            img = self.image(image_id)
            positions = self._positions(image_id)
            if img is None or positions is None:
                continue
            # the cached image is shrunk: bring the mask to the same size, nearest
            small = np.asarray(Image.fromarray(positions).resize(img.size, Image.NEAREST))
            images.append(img)
            masks.append(small)
        return images, masks

    def _train_round(self, class_ids: list[int]) -> int:
        ids = self.store.masked_ids("train")
        if len(ids) == 0:  # only validation masks so far: this model's scores are not held-out
            ids = self.store.masked_ids("val")
            self._saw_val = True
        images, masks = self._pairs(self._sample(ids))
        if images:
            self.model.train_steps(images, masks, STEPS_PER_ROUND)
        return len(ids)

    def _record(self, version: int, class_ids: list[int], n_train: int) -> None:
        held_in = getattr(self, "_saw_val", False)
        iou = metrics.IoUAccumulator(len(class_ids))
        for image_id in self.store.masked_ids("val")[:VAL_LIMIT].tolist():
            row = self.store.image(image_id)
            positions = self._positions(image_id)
            try:
                img = load_image(row.path, self.settings.max_image_pixels)
            except ImageError:
                continue
            iou.add(positions, self.model.predict_mask(img))
        self.store.record_model(
            version, self.task, self.name, self.mode, int(len(self.store.masked_ids())),
            val_miou=None if held_in else iou.mean(),
            metrics={"per_class_iou": [] if held_in else iou.per_class(),
                     "class_ids": class_ids, "n_train": n_train, "held_out": not held_in})
        if self._masks is None or self._masks.class_ids != class_ids:
            self._masks = StoredMasks(version, class_ids)
            self.publish(masks=self._masks)
        self._masks.version = version

    def _answer_asked(self) -> None:
        if self._masks is not None:
            self._predict(*self._images_of(self._masks.take_wanted()))

    def _predict(self, ids: list[int], images: list) -> None:
        """Summaries for the strategies, and each mask for the page."""
        rows = []
        for image_id, img in zip(ids, images):
            probs = self.model.predict_proba(img)
            k = probs.shape[0]
            flat = probs.reshape(k, -1)
            entropy = float((-(flat * np.log(np.clip(flat, 1e-8, 1))).sum(0)).mean())
            winner = flat.argmax(0)
            fractions = np.bincount(winner, minlength=k) / flat.shape[1]
            rows.append((image_id, self.version, entropy, fractions.astype(float).tolist()))
            if self._masks is not None:
                self._masks.add(image_id, (winner + 1).reshape(probs.shape[1:]), self.version)
        if rows:
            self.store.write_seg_predictions(pd.DataFrame(
                rows, columns=["image_id", "model_version", "entropy", "fractions"]),
                replace_all=False)
