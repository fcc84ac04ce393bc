"""Masks through the ImageEditor's value format: exact at any image size."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hitl.imaging import Letterbox
from hitl.ui.segmentation import CANVAS, editor_value, layers_to_positions

COLOURS = ["#e6194b", "#3cb44b", "#4363d8"]


@pytest.mark.parametrize("size", [(512, 512), (480, 320), (300, 700), (1500, 1000), (37, 23)])
def test_unedited_save_is_bit_exact(size):
    w, h = size
    rng = np.random.default_rng(w)
    mask = rng.integers(0, 4, (h, w)).astype(np.uint8)
    box = Letterbox.fit(w, h, CANVAS)
    value = editor_value(Image.new("RGB", size), mask, COLOURS, box)
    assert value["background"].shape == (CANVAS, CANVAS, 4)
    canvas = layers_to_positions(value["layers"], COLOURS)
    assert canvas.shape == (CANVAS, CANVAS)
    assert (box.merge_edit(mask, canvas) == mask).all()


@pytest.mark.parametrize("size", [(480, 320), (1024, 600), (200, 100)])
def test_a_stroke_lands_where_it_was_painted(size):
    w, h = size
    box = Letterbox.fit(w, h, CANVAS)
    old = np.zeros((h, w), np.uint8)
    value = editor_value(Image.new("RGB", size), old, COLOURS, box)
    layer = value["layers"][0].copy()
    # paint class 2 in a canvas rectangle inside the image area
    y0, x0 = box.top + 10, box.left + 20
    layer[y0:y0 + 30, x0:x0 + 40] = (*bytes.fromhex(COLOURS[1][1:]), 255)
    canvas = layers_to_positions([layer], COLOURS)
    new = box.merge_edit(old, canvas)
    scale = w / box.scaled_w
    ys, xs = np.nonzero(new == 2)
    assert set(np.unique(new)) == {0, 2}
    assert abs(xs.min() - 20 * scale) <= scale + 1 and abs(ys.min() - 10 * scale) <= scale + 1
    assert abs((xs.max() + 1) - 60 * scale) <= scale + 1
    # erasing (alpha 0) clears a class, other pixels keep their stored values exactly
    old = np.full((h, w), 3, np.uint8)
    value = editor_value(Image.new("RGB", size), old, COLOURS, box)
    layer = value["layers"][0].copy()
    layer[y0:y0 + 30, x0:x0 + 40, 3] = 0
    new = box.merge_edit(old, layers_to_positions([layer], COLOURS))
    assert (new == 0).sum() > 0 and set(np.unique(new)) == {0, 3}


def test_preloaded_layer_matches_image_pixels():
    """The layer is exactly canvas-sized, so the editor places it without any offset."""
    w, h = 480, 320
    mask = np.zeros((h, w), np.uint8)
    mask[100:120, 200:260] = 1
    box = Letterbox.fit(w, h, CANVAS)
    value = editor_value(Image.new("RGB", (w, h)), mask, COLOURS, box)
    alpha = value["layers"][0][:, :, 3]
    ys, xs = np.nonzero(alpha)
    s = box.scaled_w / w
    assert ys.min() == box.top + round(100 * s) and xs.min() == box.left + round(200 * s)
