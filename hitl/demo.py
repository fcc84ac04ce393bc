"""A generated demo set: shapes with class colours and textures, with ground truth.

Deterministic from a seed, made on the spot, so a fresh offline machine can try both tasks.
Each image holds one large shape (its class) and sometimes a smaller one of another class;
masks mark every pixel: background, circle, square or triangle.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from hitl.atomic import atomic_file

SHAPES = ("circle", "square", "triangle")
SEG_CLASSES = ("background",) + SHAPES
# Each class leans to a hue, with jitter, so even random-init features can tell them apart.
HUES = {"circle": 0.0, "square": 0.33, "triangle": 0.62}
SIZE = (192, 144)


# Before the task is chosen the demo has both tasks' classes (shapes first, so keys 1-3 mean
# the same in both tabs); choosing classification drops the unused background.
FIRST_LAUNCH_CLASSES = SHAPES + ("background",)


def class_colours() -> dict[str, str]:
    """Brush and button colours: the hue each shape is drawn in, grey for the background."""
    colours = {"background": "#8c8c8c"}
    for shape, hue in HUES.items():
        colours[shape] = "#{:02x}{:02x}{:02x}".format(*_hsv(hue, 0.8, 0.85))
    return colours


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    import colorsys
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def _background(rng: np.random.Generator) -> Image.Image:
    w, h = SIZE
    kind = rng.integers(3)
    base = rng.uniform(0.15, 0.45)
    if kind == 0:  # noise
        arr = base * 255 + rng.normal(0, 18, (h, w, 1))
    elif kind == 1:  # stripes
        period = rng.integers(6, 18)
        stripe = (np.arange(w) // period % 2)[None, :, None]
        arr = base * 255 + stripe * 30 + rng.normal(0, 6, (h, w, 1))
    else:  # gradient
        arr = base * 255 + np.linspace(0, 60, h)[:, None, None] + rng.normal(0, 6, (h, w, 1))
    arr = np.repeat(arr, 3, axis=2)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)


def _shape(img: Image.Image, mask: Image.Image, rng: np.random.Generator, shape: str,
           size: int) -> None:
    w, h = SIZE
    x0 = int(rng.integers(2, w - size - 2))
    y0 = int(rng.integers(2, h - size - 2))
    box = (x0, y0, x0 + size, y0 + size)
    colour = _hsv(HUES[shape] + rng.uniform(-0.06, 0.06), rng.uniform(0.6, 1.0),
                  rng.uniform(0.7, 1.0))
    _draw(ImageDraw.Draw(img), shape, box, colour)
    _draw(ImageDraw.Draw(mask), shape, box, SEG_CLASSES.index(shape) + 1)


def generate(folder: Path, count: int = 240, seed: int = 0) -> Path:
    """Write images/, masks/ and labels.csv under folder (once); returns the images folder."""
    images, masks = folder / "images", folder / "masks"
    done = folder / "labels.csv"
    if done.exists():
        return images
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        label = SHAPES[index % len(SHAPES)]
        img = _background(rng)
        mask = Image.new("L", SIZE, 1)
        if rng.random() < 0.4:
            other = SHAPES[(index + 1 + int(rng.integers(2))) % len(SHAPES)]
            _shape(img, mask, rng, other, int(rng.integers(24, 40)))
        _shape(img, mask, rng, label, int(rng.integers(56, 110)))
        if rng.random() < 0.3:
            img = img.filter(ImageFilter.GaussianBlur(1))
        name = f"demo_{index:04d}_{label}.png"
        img.save(images / name)
        mask.save(masks / name)
        rows.append((name, label))
    with atomic_file(done) as tmp, open(tmp, "w", newline="") as fh:
        csv.writer(fh).writerows([("filename", "label"), *rows])
    return images


def ground_truth(folder: Path) -> dict[str, str]:
    """filename -> class, for simulated annotators and checks."""
    with open(folder / "labels.csv", newline="") as fh:
        return {row["filename"]: row["label"] for row in csv.DictReader(fh)}


def ground_truth_mask(folder: Path, filename: str) -> np.ndarray:
    """Pixel k = k-th class of SEG_CLASSES (1-based)."""
    return np.array(Image.open(folder / "masks" / filename))
