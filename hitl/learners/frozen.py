"""Frozen mode: backbone features computed once per image and cached; linear heads on top.

A head on cached features trains in milliseconds, so after every new label the whole
catalogue is re-scored and predictions stay a second or two behind the labeler.
"""
from __future__ import annotations

import time
import zlib

import numpy as np
import pandas as pd

from hitl import metrics
from hitl.backbones import create_model, pick_device
from hitl.imaging import ImageError, load_image
from hitl.learners.base import Learner, Publish, Report
from hitl.learners.published import HeadMasks
from hitl.ml import heads
from hitl.ml.features import FeatureCache, FeatureExtractor
from hitl.settings import Settings
from hitl.store import Store

EXTRACT_CHUNK = 64      # images per extraction step (between two chances to retrain)
SEG_EXTRACT_CHUNK = 8
SUMMARY_WINDOW = 256    # segmentation images re-ranked per step
HEAD_STEPS = 150
WARM_STEPS = 60


class _FrozenBase(Learner):
    mode = "frozen"
    timm_kwargs: dict = {}

    def __init__(self, settings: Settings, store: Store, report: Report, publish: Publish):
        super().__init__(settings, store, report, publish)
        device = pick_device(settings.device)
        report(state="starting", message=f"loading backbone {settings.backbone}",
               device=str(device))
        loaded = create_model(settings.backbone, settings.weights_dir, device,
                              pretrained=settings.pretrained, num_classes=0, **self.timm_kwargs)
        report(weights_warning=loaded.warning)
        self.loaded = loaded
        self.extractor = FeatureExtractor(loaded, batch_size=settings.batch_size)
        self.head = None

    def _classes(self) -> list[int]:
        """Current class ids in order; drops the head when a class it knew has gone."""
        ids = self._current_classes()
        if self.class_ids and not set(self.class_ids) <= set(ids):
            self.head = None
        if ids != self.class_ids:
            # order or set changed: columns must follow. A reorder moves the head's rows with
            # their classes (no model change); a warm start is otherwise only kept when
            # classes were appended at the end
            if self.head is not None and sorted(ids) == sorted(self.class_ids) \
                    and self.head.num_classes == len(ids):
                rows = [self.class_ids.index(c) for c in ids]
                self.head = type(self.head)(self.head.weight[rows], self.head.bias[rows],
                                            self.head.mean, self.head.std)
            elif self.head is not None and ids[:len(self.class_ids)] != self.class_ids:
                self.head = None
            self.class_ids = ids
        return ids

    def _decode(self, image_ids) -> tuple[list[int], list]:
        """Decode images, marking the ones that fail as unreadable instead of failing."""
        good, imgs = [], []
        for row in self.store.images_by_ids(image_ids):
            try:
                imgs.append(load_image(row.path, self.settings.max_image_pixels))
                good.append(row.id)
            except ImageError as exc:
                self.store.mark_unreadable(row.id, str(exc))
        return good, imgs

    def _progress(self, done: int, total: int, count: int, seconds: float) -> None:
        rate = count / seconds if seconds > 0 and count else None
        self.report(state="extracting", extract_done=done, extract_total=total,
                    extract_rate=rate, message=f"extracting features {done}/{total}")

    def preprocessing(self) -> dict:
        raise NotImplementedError

    def model_state(self) -> dict | None:
        if self.head is None:
            return None
        return {"task": self.task, "mode": self.mode, "classes": self._class_names(),
                "backbone": self.settings.backbone,
                "backbone_weights": self.loaded.weights_source,
                "preprocessing": self.preprocessing(),
                "head": self.head.state(), "model_version": self.version,
                "loaded_model": self.loaded}


class FrozenClassifier(_FrozenBase):
    """Global feature per image, softmax head, predictions for every cached image."""

    task = "classification"

    def __init__(self, settings: Settings, store: Store, report: Report, publish: Publish):
        super().__init__(settings, store, report, publish)
        self.cache = FeatureCache(settings.features_dir, self.extractor.key)
        self._feats_ids: np.ndarray | None = None
        self._feats: np.ndarray | None = None
        publish(features=self.cache)

    def _features(self) -> tuple[np.ndarray, np.ndarray]:
        if self._feats is None:
            ids, feats = self.cache.get_global()
            order = np.argsort(ids)
            self._feats_ids, self._feats = ids[order], feats[order]
        return self._feats_ids, self._feats

    def _extract(self, ids: np.ndarray) -> int:
        good, imgs = self._decode(ids)
        if good:
            feats = self.extractor.global_features(imgs)
            self.cache.put_global(np.asarray(good, dtype=np.int64), feats)
            self._feats = None
        return len(good)

    def step(self, changed: bool) -> bool:
        class_ids = self._classes()
        all_ids = self.store.readable_image_ids()
        cached = self.cache.global_ids()
        missing = np.setdiff1d(all_ids, cached, assume_unique=False)
        labeled_ids, _ = self.store.labeled_pairs()
        urgent = np.intersect1d(missing, labeled_ids)
        if urgent.size:
            self._extract(urgent[:EXTRACT_CHUNK])
            changed = True
        if (changed or self.head is None) and labeled_ids.size and len(class_ids) >= 2:
            self._train_and_predict(class_ids)
        if missing.size:
            batch = np.setdiff1d(missing, urgent)[:EXTRACT_CHUNK]
            if batch.size:
                start = time.perf_counter()
                count = self._extract(batch)
                done = len(all_ids) - len(missing) + len(urgent) + len(batch)
                self._progress(done, len(all_ids), count, time.perf_counter() - start)
                if self.head is not None:
                    self._predict_ids(batch)
            return True
        self.report(extract_done=len(all_ids), extract_total=len(all_ids))
        return False

    def _train_and_predict(self, class_ids: list[int]) -> None:
        start = time.perf_counter()
        self.report(state="training", message="training the head")
        ids, feats = self._features()
        train_ids, train_cls = self.store.labeled_pairs("train")
        val_ids, val_cls = self.store.labeled_pairs("val")
        index = {cid: i for i, cid in enumerate(class_ids)}
        x_train, y_train = _select(ids, feats, train_ids, train_cls, index)
        held_out = y_train.size > 0
        if not held_out:  # only validation labels so far: train on them rather than idle
            x_train, y_train = _select(ids, feats, val_ids, val_cls, index)
        if y_train.size == 0:
            return
        # a head that has seen validation labels is not warm-started: its score would not be
        # held-out (getattr: learners made before this attribute existed)
        warm = self.head is not None and self.head.num_classes <= len(class_ids) \
            and not (held_out and getattr(self, "_saw_val", False))
        self._saw_val = not held_out
        self.head = heads.train_linear_head(
            x_train, y_train, len(class_ids), previous=self.head if warm else None,
            steps=WARM_STEPS if warm else HEAD_STEPS)
        version = self.store.next_model_version()
        probs = self.head.predict_proba(feats)
        self._write(ids, probs, version, replace_all=True)
        x_val, y_val = _select(ids, feats, val_ids, val_cls, index)
        val_pred = self.head.predict_proba(x_val).argmax(1) if y_val.size else y_val
        n_labels = int(len(self.store.labeled_pairs()[0]))
        self.store.record_model(
            version, self.task, self.settings.backbone, self.mode, n_labels,
            val_accuracy=metrics.accuracy(y_val, val_pred) if held_out else None,
            metrics={"confusion": metrics.confusion(y_val, val_pred, len(class_ids))
                     if held_out else None,
                     "class_ids": class_ids, "n_train": int(y_train.size),
                     "n_val": int(y_val.size), "held_out": held_out})
        self._trained(version, start, f"on {y_train.size} labels")

    def _predict_ids(self, batch: np.ndarray) -> None:
        ids, feats = self._features()
        pos = np.searchsorted(ids, batch)
        pos = pos[(pos < len(ids))]
        pos = pos[ids[pos] == batch[:len(pos)]] if len(pos) else pos
        if len(pos) and self.version is not None:
            self._write(ids[pos], self.head.predict_proba(feats[pos]), self.version,
                        replace_all=False)

    def _write(self, ids: np.ndarray, probs: np.ndarray, version: int, replace_all: bool) -> None:
        pred, prob, margin, entropy = heads.prediction_stats(probs)
        lookup = np.asarray(self.class_ids, dtype=np.int64)
        self.store.write_predictions(pd.DataFrame({
            "image_id": ids.astype(np.int64), "model_version": version,
            "class_id": lookup[pred], "probability": prob, "margin": margin,
            "entropy": entropy}), replace_all=replace_all)

    def preprocessing(self) -> dict:
        return {"key": self.extractor.key}


def _select(ids: np.ndarray, feats: np.ndarray, want_ids: np.ndarray, want_cls: np.ndarray,
            index: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Features and class indices of the wanted images that have features."""
    if len(ids) == 0 or len(want_ids) == 0:
        return np.zeros((0, feats.shape[1] if feats.ndim == 2 else 1), np.float32), \
            np.zeros(0, np.int64)
    pos = np.clip(np.searchsorted(ids, want_ids), 0, len(ids) - 1)
    keep = (ids[pos] == want_ids) & np.isin(want_cls, list(index))
    y = np.array([index[c] for c in want_cls[keep]], dtype=np.int64)
    return feats[pos[keep]], y


class FrozenSegmenter(_FrozenBase):
    """Patch grid per image, 1x1 linear head, masks upsampled from patch logits."""

    task = "segmentation"
    timm_kwargs = {"dynamic_img_size": True}

    def __init__(self, settings: Settings, store: Store, report: Report, publish: Publish):
        super().__init__(settings, store, report, publish)
        self.long_side = settings.seg_long_side
        self.cache = FeatureCache(settings.features_dir,
                                  self.extractor.patch_key(self.long_side))
        self._have: set[int] = set()
        self._targets: dict[int, tuple] = {}   # image id -> (mask checksum, targets, weights)
        self._summary_cursor = 0
        self._masks: HeadMasks | None = None  # what the page reads; see learners/published.py
        publish(features=self.cache)

    def _grid(self, image_id: int) -> np.ndarray | None:
        grid = self.cache.get_patches(image_id)
        if grid is None:
            self._extract([image_id])
            grid = self.cache.get_patches(image_id)
        return grid

    def _extract(self, ids) -> int:
        good, imgs = self._decode(ids)
        if good:
            grids = self.extractor.patch_features(imgs, self.long_side)
            for image_id, grid in zip(good, grids):
                self.cache.put_patches(image_id, grid)
                self._have.add(image_id)
        return len(good)

    def _missing(self, ids: np.ndarray) -> np.ndarray:
        out = [i for i in ids.tolist() if i not in self._have]
        still = []
        for i in out:
            if self.cache.has_patches(i):
                self._have.add(i)
            else:
                still.append(i)
        return np.asarray(still, dtype=np.int64)

    def step(self, changed: bool) -> bool:
        class_ids = self._classes()
        if self.head is None and self._masks is not None:  # its classes changed: withdraw
            self._masks = None
            self.publish(masks=None)
        if self._masks is not None:  # images a page asked for: their features first
            asked = self._missing(np.asarray(self._masks.take_wanted(), dtype=np.int64))
            if asked.size:
                self._extract(asked[:SEG_EXTRACT_CHUNK])
        all_ids = self.store.readable_image_ids()
        masked = self.store.masked_ids()
        urgent = self._missing(masked)
        if urgent.size:
            self._extract(urgent[:SEG_EXTRACT_CHUNK])
            changed = True
        if (changed or self.head is None) and masked.size and len(class_ids) >= 2:
            self._train(class_ids)
        missing = self._missing(all_ids)
        if missing.size:
            start = time.perf_counter()
            count = self._extract(missing[:SEG_EXTRACT_CHUNK])
            self._progress(len(all_ids) - len(missing) + count, len(all_ids), count,
                           time.perf_counter() - start)
        else:
            self.report(extract_done=len(all_ids), extract_total=len(all_ids))
        if self.head is not None:
            more_summaries = self._summarise(all_ids)
        else:
            more_summaries = False
        return bool(missing.size) or more_summaries

    def _patch_targets(self, image_id: int, positions: np.ndarray, grid_hw, k: int):
        """Area targets change only when a mask does: computing them is most of a round."""
        checksum = (zlib.crc32(positions.tobytes()), positions.shape, tuple(grid_hw), k)
        cached = self._targets.get(image_id)
        if cached is not None and cached[0] == checksum:
            return cached[1], cached[2]
        t, w = heads.mask_to_patch_targets(positions, grid_hw, k)
        self._targets[image_id] = (checksum, t, w)
        return t, w

    def _train(self, class_ids: list[int]) -> None:
        start = time.perf_counter()
        self.report(state="training", message="training the head")
        to_positions = self.mask_values.to_positions
        k = len(class_ids)
        train_ids = self.store.masked_ids("train")
        held_out = train_ids.size > 0
        if not held_out:  # only validation masks so far: train on them, score nothing
            train_ids = self.store.masked_ids("val")
        grids, targets, weights = [], [], []
        for image_id in train_ids.tolist():
            grid, mask = self._grid(image_id), self.store.mask(image_id)
            if grid is None or mask is None:
                continue
            t, w = self._patch_targets(image_id, to_positions(mask), grid.shape[:2], k)
            grids.append(grid)
            targets.append(t)
            weights.append(w)
        if not grids or not any(w.any() for w in weights):
            return
        warm = self.head is not None and self.head.num_classes <= k \
            and not (held_out and getattr(self, "_saw_val", False))
        self._saw_val = not held_out
        self.head = heads.train_seg_head(grids, targets, weights, k,
                                         previous=self.head if warm else None,
                                         steps=WARM_STEPS if warm else HEAD_STEPS)
        version = self.store.next_model_version()
        iou = metrics.IoUAccumulator(k)
        for image_id in self.store.masked_ids("val").tolist():
            grid, mask = self._grid(image_id), self.store.mask(image_id)
            if grid is None or mask is None:
                continue
            predicted, _ = self.head.predict_mask(grid, mask.shape)
            iou.add(to_positions(mask), predicted)
        self.store.record_model(
            version, self.task, self.settings.backbone, self.mode,
            int(len(self.store.masked_ids())), val_miou=iou.mean() if held_out else None,
            metrics={"per_class_iou": iou.per_class() if held_out else [],
                     "class_ids": class_ids, "n_train": len(grids), "held_out": held_out})
        self._summary_cursor = 0
        self._masks = HeadMasks(version, class_ids, self.head, self.cache,
                                wanted=self._masks.take_wanted() if self._masks else ())
        self.publish(masks=self._masks)
        self._trained(version, start, f"on {len(grids)} masks")

    def _summarise(self, all_ids: np.ndarray) -> bool:
        """Rank a window of images per step (entropy, class fractions) for the strategies."""
        have = np.asarray(sorted(self._have), dtype=np.int64)
        if self._summary_cursor >= len(have):
            return False
        window = have[self._summary_cursor:self._summary_cursor + SUMMARY_WINDOW]
        self._summary_cursor += len(window)
        rows = []
        for image_id in window.tolist():
            grid = self.cache.get_patches(image_id)
            if grid is None:
                continue
            entropy, fractions = self.head.summary(grid)
            rows.append((image_id, self.version, entropy, fractions.tolist()))
        if rows:
            self.store.write_seg_predictions(pd.DataFrame(
                rows, columns=["image_id", "model_version", "entropy", "fractions"]),
                replace_all=False)
        return self._summary_cursor < len(have)

    def preprocessing(self) -> dict:
        return {"key": self.extractor.patch_key(self.long_side), "long_side": self.long_side}
