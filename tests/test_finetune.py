"""End-to-end fine-tuning on tiny random-init timm models and generated images."""

import numpy as np
import PIL.Image
import pytest
import timm
import torch

from hitl.ml.finetune import ClassifierFinetuner, SegFinetuner

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """One intra-op thread: on a busy 2-core box, 2 threads wait on each other, 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def colour_image(rng, colour: int, size=(40, 32)) -> PIL.Image.Image:
    """Reddish (0) or bluish (1) noisy image; sizes vary to exercise the resize."""
    a = rng.integers(0, 90, (size[1], size[0], 3))
    a[..., 0 if colour == 0 else 2] += 150
    return PIL.Image.fromarray(a.astype(np.uint8))


def test_classifier_learns_red_vs_blue():
    rng = np.random.default_rng(0)
    labels = [i % 2 for i in range(16)]
    images = [colour_image(rng, y, size=(int(rng.integers(24, 48)), 32)) for y in labels]
    ft = ClassifierFinetuner("test_resnet", 2, CPU, size=48, lr=3e-3)
    first = ft.train_steps(images, labels, steps=3, batch_size=8)
    last = ft.train_steps(images, labels, steps=30, batch_size=8)
    assert last < first
    probs = ft.predict_proba(images)
    assert probs.shape == (16, 2) and probs.dtype == np.float32
    assert (probs.argmax(1) == np.array(labels)).mean() >= 0.9
    test = [colour_image(rng, y) for y in (0, 1, 0, 1)]
    assert (ft.predict_proba(test).argmax(1) == [0, 1, 0, 1]).all()


def test_classifier_save_load_and_grow(tmp_path):
    rng = np.random.default_rng(1)
    images = [colour_image(rng, i % 2) for i in range(4)] + [
        PIL.Image.new("L", (30, 20), 128)
    ]  # grayscale too
    labels = [0, 1, 0, 1, 0]
    built = []

    def factory(name, **kw):  # the app's weight loading goes through this
        built.append((name, kw))
        return timm.create_model(name, pretrained=False, **kw)

    ft = ClassifierFinetuner("test_efficientnet", 2, CPU, size=32, model_factory=factory)
    assert built == [("test_efficientnet", {"num_classes": 2})]
    ft.train_steps(images, labels, steps=2, batch_size=4)
    before = ft.predict_proba(images)

    path = tmp_path / "clf.pt"
    ft.save(path)
    assert path.exists() and not (tmp_path / "clf.pt.tmp").exists()
    again = ClassifierFinetuner.load(path, CPU, model_factory=factory)
    assert (again.name, again.num_classes, again.size) == ("test_efficientnet", 2, 32)
    np.testing.assert_allclose(again.predict_proba(images), before, atol=1e-6)

    head = ft.model.get_classifier()
    old_w, old_b = head.weight.detach().clone(), head.bias.detach().clone()
    ft.set_num_classes(3)
    head = ft.model.get_classifier()
    assert head.weight.shape[0] == 3 and ft.model.num_classes == 3
    torch.testing.assert_close(head.weight[:2], old_w)
    torch.testing.assert_close(head.bias[:2], old_b)
    assert ft.predict_proba(images).shape == (5, 3)
    ft.train_steps(images, [0, 1, 2, 1, 0], steps=1, batch_size=4)  # the new class trains


def square_image(rng, hw=(64, 64)):
    """A bright square on a dark noisy background; returns the image and the full truth mask."""
    h, w = hw
    a = rng.integers(0, 60, (h, w, 3))
    s = int(rng.integers(h // 4, h // 2))
    y0, x0 = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
    a[y0 : y0 + s, x0 : x0 + s] += 180
    truth = np.ones((h, w), np.uint8)
    truth[y0 : y0 + s, x0 : x0 + s] = 2
    return PIL.Image.fromarray(a.astype(np.uint8)), truth


def scribbles(rng, truth, keep=0.1):
    """Partial labels: a random 10% of pixels keep their class, the rest are 0 (unlabeled)."""
    mask = truth.copy()
    mask[rng.random(truth.shape) > keep] = 0
    return mask


def test_seg_finetuner_learns_square_from_partial_labels(tmp_path):
    rng = np.random.default_rng(0)
    data = [square_image(rng) for _ in range(8)]
    images = [im for im, _ in data]
    masks = [scribbles(rng, t) for _, t in data]
    ft = SegFinetuner("test_resnet", 2, CPU, size=64, lr=3e-3)
    ft.train_steps(images, masks, steps=40, batch_size=4)

    image, truth = square_image(rng, hw=(48, 80))  # non-square, unseen
    proba = ft.predict_proba(image)
    assert proba.shape == (2, 48, 80)
    np.testing.assert_allclose(proba.sum(0), 1.0, atol=1e-5)
    pred = ft.predict_mask(image)
    assert pred.shape == (48, 80) and pred.dtype == np.uint8
    assert set(np.unique(pred)) <= {1, 2}
    inter = ((pred == 2) & (truth == 2)).sum()
    union = ((pred == 2) | (truth == 2)).sum()
    assert inter / union > 0.7

    path = tmp_path / "seg.pt"
    ft.save(path)
    again = SegFinetuner.load(path, CPU)
    np.testing.assert_allclose(again.predict_proba(image), proba, atol=1e-6)


def test_seg_finetuner_grayscale_grow_and_mask_checks():
    rng = np.random.default_rng(2)
    image = PIL.Image.new("L", (50, 30), 40)
    mask = np.zeros((30, 50), np.uint8)
    mask[:5, :5] = 1
    mask[-5:, -5:] = 7  # above K: ignored, not an error
    ft = SegFinetuner("test_efficientnet", 2, CPU, size=32)
    assert np.isfinite(ft.train_steps([image], [mask], steps=1))
    assert np.isfinite(
        ft.train_steps([image], [np.zeros((30, 50), np.uint8)], steps=1)
    )  # nothing labeled
    with pytest.raises(ValueError):
        ft.train_steps([image], [np.zeros((10, 10), np.uint8)], steps=1)

    old = ft.model.classifier.weight.detach().clone()
    ft.set_num_classes(4)
    torch.testing.assert_close(ft.model.classifier.weight[:2], old)
    assert ft.predict_proba(image).shape == (4, 30, 50)
    ft.train_steps([image, square_image(rng)[0]], [mask, np.full((64, 64), 4, np.uint8)], steps=1)
