"""Batched feature extraction from a backbone, and an on-disk cache of the results.

Features are what the fast heads train on, so extraction runs once per image and is kept:
global (pooled) vectors for classification and retrieval, patch grids for dense tasks.
Preprocessing stays light (one PIL resize per image, then batched tensor maths) so that
throughput stays close to the bare backbone forward; the next batch is prepared in a
thread while the current one runs through the model.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, TypeVar

import numpy as np
import PIL.Image
import timm.data
import torch
from torchvision import transforms as T

from hitl.atomic import atomic_file
from hitl.backbones import LoadedModel
from hitl.imaging import as_rgb

log = logging.getLogger(__name__)

_RESAMPLE = {
    "nearest": PIL.Image.Resampling.NEAREST,
    "bilinear": PIL.Image.Resampling.BILINEAR,
    "bicubic": PIL.Image.Resampling.BICUBIC,
    "lanczos": PIL.Image.Resampling.LANCZOS,
}

A = TypeVar("A")
B = TypeVar("B")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _prefetched(fn: Callable[[A], B], items: Iterable[A]) -> Iterator[B]:
    """fn over items, computing the next result in a thread while the caller uses this one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for item in items:
            future = pool.submit(fn, item)
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()


class FeatureExtractor:
    """Global vectors and patch grids from a loaded timm backbone, in batches."""

    def __init__(self, loaded: LoadedModel, batch_size: int = 16):
        self.loaded = loaded
        self.model = loaded.model.eval()
        self.device = loaded.device
        self.batch_size = max(1, int(batch_size))

        cfg = timm.data.resolve_data_config({}, model=self.model)
        self.input_size: tuple[int, int] = (int(cfg["input_size"][1]), int(cfg["input_size"][2]))
        self.mean = tuple(float(m) for m in cfg["mean"])
        self.std = tuple(float(s) for s in cfg["std"])
        self.interpolation = str(cfg.get("interpolation", "bicubic"))
        self._resample = _RESAMPLE.get(self.interpolation, PIL.Image.Resampling.BICUBIC)
        self._pil_transform = self._pil_part(timm.data.create_transform(**cfg, is_training=False))
        self._scale = torch.tensor([1 / (255 * s) for s in self.std], device=self.device).view(
            1, 3, 1, 1
        )
        self._shift = torch.tensor(
            [m / s for m, s in zip(self.mean, self.std)], device=self.device
        ).view(1, 3, 1, 1)

        self._tokens = hasattr(self.model, "patch_embed") and hasattr(
            self.model, "num_prefix_tokens"
        )
        self.patch_size: int = self._find_patch_size()

        preprocessing = repr(
            (self.mean, self.std, self.interpolation, cfg.get("crop_pct"), cfg.get("crop_mode"))
        )
        self._digest = hashlib.sha1(preprocessing.encode()).hexdigest()[:8]
        self._stem = _safe(loaded.name) + (
            "" if loaded.weights_source != "random init" else "_randinit"
        )
        h, w = self.input_size
        self.key: str = f"{self._stem}_{w}x{h}_{self._digest}"

    @staticmethod
    def _pil_part(transform: T.Compose) -> T.Compose:
        """The PIL steps of timm's eval transform; to-tensor and normalise are done per batch."""
        steps = []
        for t in transform.transforms:
            if isinstance(t, (T.ToTensor, T.Normalize, timm.data.MaybeToTensor)):
                break
            steps.append(t)
        return T.Compose(steps)

    def _find_patch_size(self) -> int:
        if self._tokens:
            size = self.model.patch_embed.patch_size
            return int(size[0] if isinstance(size, (tuple, list)) else size)
        info = getattr(self.model, "feature_info", None)
        if isinstance(info, list) and info and "reduction" in info[-1]:
            return int(info[-1]["reduction"])
        with torch.inference_mode():
            probe = torch.zeros(1, 3, 256, 256, device=self.device)
            out = self.model.forward_features(probe)
        return 256 // int(self._to_grid(out).shape[1])

    # -- preprocessing -------------------------------------------------------------------

    def _to_batch(self, arrays: list[np.ndarray]) -> torch.Tensor:
        """uint8 HWC arrays -> normalised float NCHW on the device (small copy, maths there)."""
        x = torch.from_numpy(np.stack(arrays)).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).contiguous().float()
        return x.mul_(self._scale).sub_(self._shift)

    def _prepare_global(self, images: list[PIL.Image.Image]) -> torch.Tensor:
        return self._to_batch([np.asarray(self._pil_transform(as_rgb(im))) for im in images])

    def _prepare_patches(self, job: tuple[list[PIL.Image.Image], tuple[int, int]]) -> torch.Tensor:
        images, size = job
        return self._to_batch(
            [np.asarray(as_rgb(im).resize(size, self._resample, reducing_gap=3.0)) for im in images]
        )

    # -- global --------------------------------------------------------------------------

    def global_features(self, images: list[PIL.Image.Image]) -> np.ndarray:
        """(N, C) float16 pooled features (timm pre-logits) under timm's eval preprocessing."""
        chunks = [images[i : i + self.batch_size] for i in range(len(images))[:: self.batch_size]]
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for x in _prefetched(self._prepare_global, chunks):
                feats = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
                out.append(feats.float().cpu().numpy().astype(np.float16))
        if not out:
            dim = getattr(self.model, "head_hidden_size", None) or self.model.num_features
            return np.zeros((0, int(dim)), np.float16)
        return np.concatenate(out)

    # -- patches -------------------------------------------------------------------------

    def patch_key(self, long_side: int) -> str:
        """Cache key of patch grids at this working size (no crop, so a key of its own)."""
        return f"{self._stem}_patch{self.patch_size}_long{int(long_side)}_{self._digest}"

    def working_size(self, width: int, height: int, long_side: int) -> tuple[int, int]:
        """(w, h) the image is resized to: long side ~long_side, both multiples of the patch."""
        p = self.patch_size
        scale = long_side / max(width, height)
        w = max(p, int(round(width * scale / p)) * p)
        h = max(p, int(round(height * scale / p)) * p)
        return w, h

    def patch_features(self, images: list[PIL.Image.Image], long_side: int) -> list[np.ndarray]:
        """Per image an (h, w, C) float16 grid covering the whole (resized, uncropped) image."""
        if self._tokens and not getattr(self.model, "dynamic_img_size", False):
            raise ValueError(
                f"{self.loaded.name} has a fixed input size; create it with "
                "create_model(..., dynamic_img_size=True) to get patch features at any size"
            )
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(self.working_size(im.width, im.height, long_side), []).append(i)
        jobs: list[tuple[list[int], tuple[int, int]]] = []
        for size, idx in groups.items():
            for start in range(0, len(idx), self.batch_size):
                jobs.append((idx[start : start + self.batch_size], size))

        results: list[np.ndarray | None] = [None] * len(images)
        prepare = lambda job: self._prepare_patches(([images[i] for i in job[0]], job[1]))  # noqa: E731
        with torch.inference_mode():
            for (idx, (w, h)), x in zip(jobs, _prefetched(prepare, jobs)):
                grids = self._to_grid(
                    self.model.forward_features(x), h // self.patch_size, w // self.patch_size
                )
                grids = grids.float().cpu().numpy().astype(np.float16)
                for j, i in enumerate(idx):
                    results[i] = grids[j]
        return results  # type: ignore[return-value]

    def _to_grid(
        self, out: torch.Tensor, h: int | None = None, w: int | None = None
    ) -> torch.Tensor:
        """forward_features output -> (B, h, w, C): tokens minus prefix, or a CNN's last map."""
        if out.ndim == 3:
            tokens = out[:, self.model.num_prefix_tokens :]
            if h is None or w is None:
                h = w = int(round(tokens.shape[1] ** 0.5))
            return tokens.reshape(out.shape[0], h, w, out.shape[-1])
        channels = self.model.num_features
        if out.shape[1] == channels and out.shape[-1] != channels:
            return out.permute(0, 2, 3, 1)
        return out  # already NHWC


class FeatureCache:
    """On-disk cache in the session folder; survives restarts; atomic writes (tmp, os.replace).

    Global features are appended as shard files (one .npz per put) named in write order;
    reads merge them, the last write of an id winning. So that reads stay fast however many
    small puts there were, every MERGE_FANOUT newest shards of one level are merged into one
    shard of the next level (size-tiered, like an LSM tree): each row is rewritten only a
    few times and the shard count stays small. Patch grids are one .npy per image.
    """

    MERGE_FANOUT = 16

    def __init__(self, root: Path, key: str):
        self.dir = Path(root) / _safe(key)
        self._patch_dir = self.dir / "patches"
        self._lock = threading.RLock()
        self._ids: np.ndarray | None = None
        self._last_seq = 0

    # -- files ---------------------------------------------------------------------------

    @staticmethod
    def _write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
        with atomic_file(path) as tmp, open(tmp, "wb") as f:
            write(f)

    def _shards(self) -> list[tuple[int, int, Path]]:
        """(seq, level, path) of complete shards in write order; tmp files never match."""
        found = []
        for path in self.dir.glob("global-*.npz"):
            try:
                _, seq, level, _ = path.stem.split("-")
                found.append((int(seq), int(level.lstrip("L")), path))
            except ValueError:
                continue
        return sorted(found)

    def _write_shard(self, seq: int, level: int, ids: np.ndarray, feats: np.ndarray) -> None:
        """The number orders shards by time; the random tail means none is ever overwritten."""
        self._last_seq = max(seq, self._last_seq)
        path = self.dir / f"global-{seq:020d}-L{level}-{secrets.token_hex(4)}.npz"
        self._write_atomic(path, lambda f: np.savez(f, ids=ids, feats=feats))

    @staticmethod
    def _read_shard(path: Path, feats: bool = True) -> tuple[np.ndarray, np.ndarray | None] | None:
        try:
            with np.load(path) as z:
                return z["ids"], (z["feats"] if feats else None)
        except Exception as e:  # unreadable shard: skip it rather than lose the rest
            log.warning("skipping unreadable feature shard %s: %s", path, e)
            return None

    @staticmethod
    def _merge(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Concatenate in write order; keep each id's last row; sort by id."""
        ids = np.concatenate([p[0] for p in parts])
        feats = np.concatenate([p[1] for p in parts])
        if ids.size > 1 and np.all(ids[1:] > ids[:-1]):
            return ids, feats  # already sorted and unique: the common case, no copy
        # reversed, np.unique's first index is the last write
        uniq, first = np.unique(ids[::-1], return_index=True)
        return uniq, feats[ids.size - 1 - first]

    # -- global --------------------------------------------------------------------------

    def put_global(self, ids: np.ndarray, feats: np.ndarray) -> None:
        """Append one shard: ids (N,) int64 with feats (N, C) stored as float16."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        feats = np.asarray(feats, dtype=np.float16)
        if feats.ndim != 2 or feats.shape[0] != ids.shape[0]:
            raise ValueError(f"ids {ids.shape} and feats {feats.shape} do not match")
        if ids.size == 0:
            return
        with self._lock:
            self._write_shard(max(self._last_seq + 1, time.time_ns()), 0, ids, feats)
            if self._ids is not None:
                self._ids = np.union1d(self._ids, ids)
            self._compact()

    def _compact(self) -> None:
        """While the newest run of same-level shards is MERGE_FANOUT long, fold it into one.

        Levels never rise towards newer shards, so that run is a suffix in write order and the
        merged shard, numbered after it, keeps last-write-wins intact. A crash midway leaves
        both copies, which reads dedupe.
        """
        while True:
            shards = self._shards()
            if len(shards) < self.MERGE_FANOUT:
                return
            level = shards[-1][1]
            run = []
            for shard in reversed(shards):
                if shard[1] != level:
                    break
                run.append(shard)
            if len(run) < self.MERGE_FANOUT:
                return
            run.reverse()
            parts = [r for _, _, p in run if (r := self._read_shard(p))]
            if parts:
                self._write_shard(run[-1][0] + 1, level + 1, *self._merge(parts))
            for _, _, path in run:
                path.unlink(missing_ok=True)

    def global_ids(self) -> np.ndarray:
        """Sorted unique ids with cached global features (index read once, kept up to date)."""
        with self._lock:
            if self._ids is None:
                parts = [
                    r[0] for _, _, p in self._shards() if (r := self._read_shard(p, feats=False))
                ]
                self._ids = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
            return self._ids.copy()

    def get_global(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, feats) for every cached id, sorted by id; the last write of an id wins."""
        with self._lock:
            parts = [r for _, _, p in self._shards() if (r := self._read_shard(p))]
            if not parts:
                return np.zeros(0, np.int64), np.zeros((0, 0), np.float16)
            ids, feats = self._merge(parts)
            self._ids = ids.copy()
            return ids, feats

    # -- patches -------------------------------------------------------------------------

    def _patch_path(self, image_id: int) -> Path:
        return self._patch_dir / f"{int(image_id)}.npy"

    def put_patches(self, image_id: int, grid: np.ndarray) -> None:
        """Store one image's (h, w, C) grid as float16, replacing any earlier one."""
        grid = np.ascontiguousarray(grid, dtype=np.float16)
        self._write_atomic(self._patch_path(image_id), lambda f: np.save(f, grid))

    def get_patches(self, image_id: int) -> np.ndarray | None:
        path = self._patch_path(image_id)
        try:
            return np.load(path)
        except FileNotFoundError:
            return None
        except Exception as e:
            log.warning("unreadable patch grid %s: %s", path, e)
            return None

    def has_patches(self, image_id: int) -> bool:
        return self._patch_path(image_id).is_file()

    def clear(self) -> None:
        """Forget everything under this key (e.g. after the backbone changed)."""
        with self._lock:
            shutil.rmtree(self.dir, ignore_errors=True)
            self._ids = None
