"""Classification's suspect scores: the out-of-sample probability of each label's class."""
from __future__ import annotations

import numpy as np
import pandas as pd


def score_suspects(store, cache, class_ids: list[int]) -> pd.DataFrame | None:
    """5-fold linear heads on the cached global features (hitl.ml.suspects); None with fewer
    than two classes or two labeled images that have features."""
    labeled, labels = store.labeled_pairs()
    ids, feats = cache.get_global()
    if len(ids) == 0 or len(class_ids) < 2:
        return None
    pos = np.clip(np.searchsorted(ids, labeled), 0, len(ids) - 1)
    ok = (ids[pos] == labeled) & np.isin(labels, class_ids)
    if ok.sum() < 2:
        return None
    index = {c: i for i, c in enumerate(class_ids)}
    y = np.array([index[c] for c in labels[ok]], dtype=np.int64)
    from hitl.ml.suspects import classification_oos  # torch: on first use
    result = classification_oos(feats[pos[ok]], y, len(class_ids))
    lookup = np.asarray(class_ids, dtype=np.int64)
    return pd.DataFrame({"image_id": labeled[ok], "label_class_id": labels[ok],
                         "predicted_class_id": lookup[result.predicted],
                         "score": result.score})
