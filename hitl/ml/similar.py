"""More like this: the nearest images by cosine similarity of cached global features."""

from __future__ import annotations

import numpy as np
import torch

from hitl.ml.heads import _tensor


def nearest(
    query: np.ndarray, feats: np.ndarray, n: int, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the n rows of feats most similar to query, and their cosine similarity.

    query: (C,); feats: (N, C), any float dtype (the fp16 cache is read as it is);
    exclude: boolean (N,) rows never returned (the image itself, labeled images). Most similar
    first. The product runs in torch, like the heads (numpy's BLAS threads fight torch's here).
    """
    x = _tensor(np.asarray(feats))
    if x.ndim != 2 or np.asarray(query).shape != (x.shape[1],):
        raise ValueError(f"need (C,) query and (N, C) feats; got {np.shape(query)}, {x.shape}")
    x = x.float()
    q = torch.as_tensor(np.asarray(query, np.float32))
    sims = (x @ q) / (x.norm(dim=1) * q.norm()).clamp_min(1e-12)
    if exclude is not None:
        sims[torch.from_numpy(np.asarray(exclude, bool))] = -float("inf")
    k = int(min(max(n, 0), int(torch.isfinite(sims).sum())))
    if k == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    top = torch.topk(sims, k)
    return top.indices.numpy().astype(np.int64), top.values.numpy().astype(np.float32)
