"""Segmentation's suspect scores: the IoU of each mask's labeled pixels with an out-of-sample
predicted mask."""
from __future__ import annotations

import numpy as np
import pandas as pd

MAX_SUSPECT_MASKS = 300  # newest masks scored per refresh (all their patch grids in memory)


def score_suspects(store, cache, class_ids: list[int]) -> pd.DataFrame | None:
    """5-fold linear heads on the cached patch grids (hitl.ml.suspects) of the newest masks;
    None with fewer than two classes or two masks that have features."""
    if len(class_ids) < 2:
        return None
    to_positions = store.mask_values().to_positions
    ids, grids, targets, weights, masks = [], [], [], [], []
    for image_id in store.masked_ids()[-MAX_SUSPECT_MASKS:].tolist():
        grid, mask = cache.get_patches(image_id), store.mask(image_id)
        if grid is None or mask is None:
            continue
        positions = to_positions(mask)
        from hitl.ml import heads  # torch: imported when a review needs it, not at start-up
        t, w = heads.mask_to_patch_targets(positions, grid.shape[:2], len(class_ids))
        ids.append(image_id)
        grids.append(grid)
        targets.append(t)
        weights.append(w)
        masks.append(positions)
    if len(ids) < 2:
        return None
    from hitl.ml.suspects import segmentation_oos
    iou = segmentation_oos(grids, targets, weights, masks, len(class_ids))
    none = pd.array([None] * len(ids), dtype="Int64")
    return pd.DataFrame({"image_id": np.asarray(ids, np.int64), "label_class_id": none,
                         "predicted_class_id": none, "score": iou})
