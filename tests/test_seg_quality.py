"""A simulated annotator paints a few strokes per class; IoU must rise with annotated images."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from hitl import demo as demo_set
from hitl import metrics
from hitl.backbones import create_model
from hitl.imaging import load_image
from hitl.ml import heads
from hitl.ml.features import FeatureExtractor
from hitl.ml.finetune import SegFinetuner
from tests.conftest import TEST_DATA


def strokes(truth: np.ndarray, rng: np.random.Generator, per_class: int = 3,
            radius: int = 5) -> np.ndarray:
    """Partial labels: a few round dabs inside each class region, the rest unlabeled (0)."""
    out = np.zeros_like(truth)
    yy, xx = np.mgrid[:truth.shape[0], :truth.shape[1]]
    for k in np.unique(truth):
        ys, xs = np.nonzero(truth == k)
        for i in rng.choice(len(ys), size=min(per_class, len(ys)), replace=False):
            dab = (yy - ys[i]) ** 2 + (xx - xs[i]) ** 2 <= radius ** 2
            out[dab & (truth == k)] = k
    return out


def miou(predicted: list[np.ndarray], truths: list[np.ndarray], k: int) -> float:
    acc = metrics.IoUAccumulator(k)
    for p, t in zip(predicted, truths):
        acc.add(t, p)
    return acc.mean()


def test_frozen_head_iou_rises_on_the_demo_set(tmp_path):
    torch.manual_seed(0)
    folder = demo_set.generate(tmp_path / "demo", 60, seed=5).parent
    names = sorted(p.name for p in (folder / "images").iterdir())
    loaded = create_model("test_vit", tmp_path, torch.device("cpu"), pretrained=False,
                          num_classes=0, dynamic_img_size=True)
    extractor = FeatureExtractor(loaded, batch_size=16)
    grids = extractor.patch_features([load_image(folder / "images" / n) for n in names], 192)
    truths = [demo_set.ground_truth_mask(folder, n) for n in names]
    k = len(demo_set.SEG_CLASSES)
    rng = np.random.default_rng(0)
    painted = [strokes(t, rng) for t in truths]
    test = range(40, 60)

    def score(n_images: int) -> float:
        targets = [heads.mask_to_patch_targets(painted[i], grids[i].shape[:2], k)
                   for i in range(n_images)]
        head = heads.train_seg_head([grids[i] for i in range(n_images)],
                                    [t for t, _ in targets], [w for _, w in targets], k,
                                    steps=200)
        return miou([head.predict_mask(grids[i], truths[i].shape)[0] for i in test],
                    [truths[i] for i in test], k)
    few, many = score(2), score(40)
    assert many > few + 0.05, (few, many)


def membrane_tiles(tile: int = 128, size: int = 96):
    """The three sample slices cut into 4x4 tiles each: 48 small real images with truths."""
    folder = TEST_DATA / "membrane"
    images, truths = [], []
    for name in sorted(p.name for p in (folder / "images").iterdir()):
        image = Image.open(folder / "images" / name).convert("RGB")
        mask = Image.open(folder / "masks" / name)
        for top in range(0, image.height, tile):
            for left in range(0, image.width, tile):
                box = (left, top, left + tile, top + tile)
                images.append(image.crop(box).resize((size, size)))
                # ground truth: 0 = membrane, 255 = cell interior -> 1 (membrane), 2 (cell)
                truth = np.array(mask.crop(box).resize((size, size), Image.NEAREST)) > 127
                truths.append(np.where(truth, 2, 1).astype(np.uint8))
    return images, truths


def test_finetune_iou_rises_on_membrane():
    torch.manual_seed(0)
    images, truths = membrane_tiles()
    rng = np.random.default_rng(1)
    painted = [strokes(t, rng, per_class=12, radius=3) for t in truths]
    model = SegFinetuner("test_resnet", 2, torch.device("cpu"), size=96)
    test = range(32, 48)  # the third slice is never trained on

    def score() -> float:
        return miou([model.predict_mask(images[i]) for i in test], [truths[i] for i in test], 2)
    before = score()
    for n_images in (2, 8, 24):
        model.train_steps(images[:n_images], painted[:n_images], steps=15, batch_size=4)
    after = score()
    assert after > before + 0.05 and after > 0.4, (before, after)
