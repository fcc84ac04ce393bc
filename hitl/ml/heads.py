"""Linear heads over cached frozen-backbone features.

Frozen mode keeps a backbone fixed and caches its features on disk, so the only thing
trained while the user labels is a linear layer: a softmax over one global vector per image
(classification) or a 1x1 "conv" over a patch grid (segmentation). Both are the same convex
problem, fitted by `_fit_softmax` with hand-written gradients and Adam: no autograd, so a
retrain after every label is cheap (tens of milliseconds for a few hundred labels on 2 cores;
100k labeled patches in under a second).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Rows per optimisation step. Up to this many labeled rows the fit is full-batch (deterministic);
# above it each step takes the next slice of a shuffled copy, which keeps the step cost bounded.
_BATCH = 4096
# Rows used to estimate the standardisation statistics (a random sample when there are more).
_STATS_ROWS = 8192

# All matrix products here go through torch, never numpy: interleaving torch's OpenMP threads and
# numpy's BLAS threads on a 2-core machine made 1 ms products take tens of milliseconds.


# --------------------------------------------------------------------------------------------
# shared fitting code


def _tensor(a: np.ndarray) -> torch.Tensor:
    """Zero-copy view; read-only arrays (np.load mmap caches) are fine (never written)."""
    a = np.ascontiguousarray(a)
    if a.flags.writeable:
        return torch.from_numpy(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(a)


def _standardise_stats(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted per-dimension mean and std; std floored so constant dims stay finite."""
    x = x.float()
    p = (w / w.sum()).unsqueeze(0)
    mean = (p @ x)[0]
    var = (p @ (x - mean) ** 2)[0]
    return mean, var.sqrt().clamp_min(1e-6)


def _transfer(
    previous: _Layer, mean: torch.Tensor, std: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-express a previous head in new standardisation stats, so a warm start keeps its logits.

    logits = W (x - m0) / s0 + b  with  x = z s1 + m1
      =>  W' = W s1 / s0,  b' = b + W (m1 - m0) / s0.
    If classes were added since, their rows start at zero; if removed, extra rows are dropped.
    """
    W0, b0, m0, s0 = (
        _tensor(np.asarray(a, np.float32))
        for a in (previous.weight, previous.bias, previous.mean, previous.std)
    )
    k = min(num_classes, W0.shape[0])
    W, b = torch.zeros(num_classes, W0.shape[1]), torch.zeros(num_classes)
    W[:k] = W0[:k] * (std / s0)
    b[:k] = b0[:k] + W0[:k] @ ((mean - m0) / s0)
    return W, b


def _fit_softmax(
    x: torch.Tensor,
    targets: torch.Tensor,
    w: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor,
    steps: int,
    lr: float,
    weight_decay: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise sum_i w_i CE(t_i, softmax(W (x_i - mean) / std + b)) + wd/2 |W|^2 with Adam.

    x: (N, C) raw features, any float dtype, already in random order when N > _BATCH (each step
    then takes the next slice); targets: (N, K) rows summing to 1; w: (N,) summing to 1.
    The softmax cross-entropy gradient w.r.t. the logits is w (p - t), so there is no autograd.
    Batches are standardised into one reused buffer with a ones column, making [W | b] a single
    matrix: a step is two matmuls and a handful of in-place ops.
    """
    n, c = x.shape
    z = torch.ones(min(n, _BATCH), c + 1)  # [standardised features | 1]
    inv_std = 1.0 / std

    def standardise(rows: torch.Tensor) -> None:
        torch.sub(rows, mean, out=z[:, :c]).mul_(inv_std)

    if n <= _BATCH:
        standardise(x)
        tb, wb = targets, w.unsqueeze(1)
    theta = torch.cat([W, b[:, None]], 1)  # (K, C + 1)
    decay = torch.full((1, c + 1), weight_decay)
    decay[0, c] = 0.0  # no decay on the bias
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    start = 0
    for t in range(1, steps + 1):
        if n > _BATCH:
            if start + _BATCH > n:
                start = 0
            sl = slice(start, start + _BATCH)
            standardise(x[sl])
            tb, wb = targets[sl], w[sl].unsqueeze(1) * (n / _BATCH)
            start += _BATCH
        g = torch.softmax(z @ theta.t(), dim=1).sub_(tb).mul_(wb)  # dLoss/dlogits
        grad = torch.addcmul(g.t() @ z, decay, theta)
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        lr_t = lr * (0.55 + 0.45 * math.cos(math.pi * (t - 1) / steps))  # cosine, lr -> lr / 10
        theta.addcdiv_(m, v.sqrt().add_(eps), value=-lr_t * (1 - beta2**t) ** 0.5 / (1 - beta1**t))
    return theta[:, :c].contiguous(), theta[:, c].contiguous()


def _layer(head: _Layer) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold standardisation into the layer: W (x - m) / s + b == (W / s) x + (b - (W / s) m)."""
    W = _tensor(np.asarray(head.weight, np.float32) / np.asarray(head.std, np.float32))
    return W, _tensor(np.asarray(head.bias, np.float32)) - W @ _tensor(
        np.asarray(head.mean, np.float32)
    )


def _apply(head: _Layer, feats: np.ndarray) -> torch.Tensor:
    """Logits (..., K) for features (..., C) of any float dtype."""
    W, b = _layer(head)
    x = _tensor(feats)
    return torch.addmm(b, x.reshape(-1, x.shape[-1]).float(), W.t()).reshape(*x.shape[:-1], -1)


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


def _shuffled(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)


# --------------------------------------------------------------------------------------------
# classification


@dataclass
class _Layer:
    """A linear layer over standardised features: what both heads are and store."""

    weight: np.ndarray  # (K, C)
    bias: np.ndarray  # (K,)
    mean: np.ndarray  # (C,) standardisation stats of the training features
    std: np.ndarray  # (C,)

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    def state(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias, "mean": self.mean, "std": self.std}

    @classmethod
    def from_state(cls, d: dict[str, np.ndarray]):
        return cls(**{k: np.asarray(d[k], np.float32) for k in ("weight", "bias", "mean", "std")})


class LinearHead(_Layer):
    """Softmax classifier over one global feature vector per image."""

    def predict_proba(self, feats: np.ndarray) -> np.ndarray:
        """(N, C) features (float16 or float32) -> (N, K) float32 probabilities."""
        return torch.softmax(_apply(self, feats), -1).numpy()


def _fit_head(
    x: torch.Tensor,
    targets: torch.Tensor,
    w: torch.Tensor,
    num_classes: int,
    previous,
    steps: int,
    lr: float,
    weight_decay: float,
) -> tuple[np.ndarray, ...]:
    """Standardise, warm-start from `previous` when the feature size matches, fit the softmax;
    returns (weight, bias, mean, std) for either head."""
    mean, std = _standardise_stats(x[:_STATS_ROWS], w[:_STATS_ROWS])
    if previous is not None and previous.weight.shape[1] == x.shape[1]:
        W, b = _transfer(previous, mean, std, num_classes)
    else:
        W, b = torch.zeros(num_classes, x.shape[1]), torch.zeros(num_classes)
    W, b = _fit_softmax(x, targets, w, mean, std, W, b, steps, lr, weight_decay)
    return W.numpy(), b.numpy(), mean.numpy(), std.numpy()


def train_linear_head(feats: np.ndarray, labels: np.ndarray, num_classes: int,
                      previous: LinearHead | None = None, steps: int = 100,
                      weight_decay: float = 1e-4, lr: float = 0.1) -> LinearHead:
    """Fit a class-balanced softmax layer on standardised features.

    labels are 0-based class indices. Every class counts equally in the loss however many labels
    it has (rare classes are what the user is hunting for); classes with no labels still get a
    row, which the loss pushes down. `previous` (same feature size) warm-starts the fit, exactly
    preserving its predictions under the new standardisation, so few steps suffice.
    """
    feats, labels = np.asarray(feats), np.asarray(labels, np.int64)
    if feats.ndim != 2 or len(feats) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"need (N, C) feats and N labels, N > 0; got {feats.shape} and {labels.shape}"
        )
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes})")
    if len(labels) > _BATCH:
        order = _shuffled(len(labels))
        feats, labels = feats[order], labels[order]
    x = _tensor(feats)
    if not x.is_floating_point():
        x = x.float()
    y = torch.from_numpy(labels)
    counts = torch.bincount(y, minlength=num_classes).float()
    w = 1.0 / counts[y]  # each present class gets equal total weight
    w /= w.sum()
    return LinearHead(
        *_fit_head(
            x, F.one_hot(y, num_classes).float(), w, num_classes, previous, steps, lr, weight_decay
        )
    )


def prediction_stats(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(predicted index, top-1 probability, margin top1 - top2 (1.0 when K == 1), entropy in nats).

    These rank images for review: low margin / high entropy = the model is unsure.
    """
    p = _tensor(np.asarray(probs, np.float32))
    if p.shape[1] == 1:
        top1, pred = p[:, 0].clone(), torch.zeros(len(p), dtype=torch.int64)
        margin = torch.ones(len(p))
    else:
        top, idx = p.topk(2, dim=1)
        top1, pred, margin = top[:, 0], idx[:, 0], top[:, 0] - top[:, 1]
    return pred.numpy(), top1.numpy(), margin.numpy(), _entropy(p).numpy()


# --------------------------------------------------------------------------------------------
# segmentation


def _area_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) matrix: row i holds the fraction of output cell i covered by each input pixel.

    Output cell i spans [i * n_in / n_out, (i + 1) * n_in / n_out) in pixel units, so a mask of any
    size maps onto the grid exactly by area (rows sum to 1).
    """
    edges = torch.arange(n_out + 1, dtype=torch.float64) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    px = torch.arange(n_in, dtype=torch.float64)[None, :]
    overlap = (torch.minimum(hi, px + 1) - torch.maximum(lo, px)).clamp_min(0)
    return (overlap / (n_in / n_out)).float()


def mask_to_patch_targets(
    mask: np.ndarray, grid_hw: tuple[int, int], num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Map a partial label mask onto the feature grid.

    mask: (H, W) uint8 at the image's original size; 0 = unlabeled, k = class k (1-based); values
    above num_classes are treated as unlabeled. Returns soft targets (h*w, K) float32 (the class
    mix among the labeled pixels of each patch) and weights (h*w,) float32 (labeled fraction of
    the patch area). Unlabeled pixels never contribute; patches with no labeled pixel get weight 0.
    """
    m = _tensor(mask)
    h, w = grid_hw
    Ah, Aw = _area_matrix(m.shape[0], h), _area_matrix(m.shape[1], w)
    area = torch.zeros(num_classes, h, w)
    for k in torch.unique(m).tolist():
        if 1 <= k <= num_classes:
            area[k - 1] = Ah @ (m == k).float() @ Aw.t()
    area = area.reshape(num_classes, h * w).t()
    weights = area.sum(1)
    weights[weights < 1e-6] = 0.0  # float dust from the area matrices
    targets = torch.where(weights[:, None] > 0, area / weights.clamp_min(1e-6)[:, None], 0.0)
    return targets.numpy(), weights.clamp_max(1.0).numpy()


class SegHead(_Layer):
    """1x1 linear layer over a patch grid: per-patch class logits."""

    def patch_logits(self, grid: np.ndarray) -> np.ndarray:
        """(h, w, C) -> (h, w, K) float32 logits."""
        return _apply(self, grid).numpy()

    def predict_mask(
        self, grid: np.ndarray, out_hw: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits bilinearly upsampled to out_hw (the original image size), then argmax.

        Returns the (H, W) uint8 mask with values 1..K and the per-class fraction (K,) of it.
        Upsampling logits rather than labels gives smooth boundaries between patches.
        """
        logits = _apply(self, grid).permute(2, 0, 1).unsqueeze(0)
        up = F.interpolate(
            logits, size=(int(out_hw[0]), int(out_hw[1])), mode="bilinear", align_corners=False
        )
        mask = up[0].max(0).indices  # max(0) is several times faster than argmax(0) here
        fractions = torch.bincount(mask.ravel(), minlength=self.num_classes).float() / mask.numel()
        return (mask + 1).to(torch.uint8).numpy(), fractions.numpy()

    def summary(self, grid: np.ndarray) -> tuple[float, np.ndarray]:
        """(mean per-patch entropy, per-class predicted fractions (K,)) at patch resolution.

        Cheap enough to rank thousands of images by uncertainty or by how much of a class they hold.
        """
        probs = torch.softmax(_apply(self, grid), -1).reshape(-1, self.num_classes)
        fractions = torch.bincount(probs.argmax(1), minlength=self.num_classes).float() / len(probs)
        return float(_entropy(probs).mean()), fractions.numpy()


def train_seg_head(grids: list[np.ndarray], targets: list[np.ndarray],
                   weights: list[np.ndarray], num_classes: int, previous: SegHead | None = None,
                   steps: int = 100, weight_decay: float = 1e-4, lr: float = 0.1) -> SegHead:
    """Weighted soft cross-entropy over all labeled patches of all images.

    grids[i]: (h, w, C); targets[i]: (h*w, K) and weights[i]: (h*w,) from mask_to_patch_targets.
    Patches with weight 0 are dropped first, so unlabeled pixels reach neither the loss nor the
    standardisation stats. Features stay in their cached dtype (float16) until a batch needs them.
    """
    xs, ts, ws = [], [], []
    for g, t, wt in zip(grids, targets, weights, strict=True):
        wt = np.asarray(wt, np.float32).reshape(-1)
        keep = np.flatnonzero(wt > 0)
        if len(keep):
            xs.append(np.asarray(g).reshape(-1, g.shape[-1])[keep])
            ts.append(np.asarray(t, np.float32).reshape(-1, num_classes)[keep])
            ws.append(wt[keep])
    if not xs:
        raise ValueError("no labeled patches to train on")
    x, t, w = np.concatenate(xs), np.concatenate(ts), np.concatenate(ws)
    if len(x) > _BATCH:
        order = _shuffled(len(x))
        x, t, w = x[order], t[order], w[order]
    x, t, w = torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(w)
    if not x.is_floating_point():
        x = x.float()
    w /= w.sum()
    return SegHead(*_fit_head(x, t, w, num_classes, previous, steps, lr, weight_decay))
