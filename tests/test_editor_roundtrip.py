"""Masks through the painter's wire format: exact at any image size.

The page paints a mask at the image's own size up to MASK_SIDE on its long side
(hitl/ui/segmentation.py mask_size) and sends back only the pixels the labeler touched (a grey
PNG: the class position, or KEEP); the server scales that to the image (a larger one) and
applies it over the stored mask.
"""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from hitl.store import StoreError
from hitl.ui.segmentation import KEEP, apply_edit, decode_edit, mask_size, positions_url


def as_edit(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8), "L").convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def shown(positions: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """What the page decodes from positions_url: the mask at display size."""
    url = positions_url(positions, size)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


@pytest.mark.parametrize("size,display", [((512, 512), (512, 512)), ((1500, 1000), (1500, 1000)),
                                          ((37, 23), (37, 23)), ((6000, 4000), (4096, 2731))])
def test_untouched_save_is_bit_exact(size, display):
    w, h = size
    assert mask_size(w, h) == display
    stored = np.random.default_rng(w).integers(0, 4, (h, w)).astype(np.uint8)
    untouched = np.full((display[1], display[0]), KEEP, np.uint8)
    out = apply_edit(stored, decode_edit(as_edit(untouched), w, h), w, h)
    assert (out == stored).all()
    assert shown(stored, display).shape == (display[1], display[0])


@pytest.mark.parametrize("size,display", [((480, 320), (480, 320)), ((6000, 3000), (4096, 2048))])
def test_a_stroke_lands_where_it_was_painted(size, display):
    w, h = size
    assert mask_size(w, h) == display
    edit = np.full((display[1], display[0]), KEEP, np.uint8)
    edit[10:40, 20:60] = 2   # painted class 2
    edit[50:60, 20:60] = 0   # erased
    stored = np.full((h, w), 3, np.uint8)
    out = apply_edit(stored, decode_edit(as_edit(edit), w, h), w, h)
    s = w / display[0]
    ys, xs = np.nonzero(out == 2)
    assert abs(xs.min() - 20 * s) <= s and abs(xs.max() + 1 - 60 * s) <= s
    assert abs(ys.min() - 10 * s) <= s and abs(ys.max() + 1 - 40 * s) <= s
    assert (out == 0).sum() > 0 and set(np.unique(out).tolist()) == {0, 2, 3}
    keep = np.ones((h, w), bool)
    keep[: int(61 * s), : int(61 * s)] = False
    assert (out[keep] == 3).all()  # everything away from the edit is as stored


def test_a_new_mask_starts_empty():
    edit = np.full((20, 30), KEEP, np.uint8)
    edit[5, 5] = 1
    out = apply_edit(None, decode_edit(as_edit(edit), 30, 20), 30, 20)
    assert out.sum() == 1 and out[5, 5] == 1


@pytest.mark.parametrize("bad", [None, "", "data:image/jpeg;base64,AAAA",
                                 "data:image/png;base64,@@"])
def test_a_bad_edit_is_refused_in_one_line(bad):
    with pytest.raises(StoreError) as err:
        decode_edit(bad, 30, 20)
    assert "\n" not in str(err.value)
