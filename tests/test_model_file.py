"""The model file: trained head + backbone saved, loaded elsewhere, same predictions."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hitl import demo
from hitl.backbones import create_model
from hitl.export import export
from hitl.imaging import load_image
from hitl.ml import heads
from hitl.ml.features import FeatureExtractor
from hitl.model_file import FORMAT, load_model, read_state, save_model
from hitl.store import Store

CPU = torch.device("cpu")
BACKBONE = "test_vit"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    root = demo.generate(folder, count=12)
    truth = demo.ground_truth(folder)
    files = sorted(root.iterdir())
    return folder, files, [demo.SHAPES.index(truth[f.name]) for f in files]


def classification_state(files, labels) -> tuple[dict, np.ndarray]:
    """What the frozen classifier publishes, built the way the trainer builds it."""
    loaded = create_model(BACKBONE, Path("no-weights"), CPU, pretrained=False, num_classes=0)
    extractor = FeatureExtractor(loaded, batch_size=4)
    feats = extractor.global_features([load_image(f) for f in files])
    head = heads.train_linear_head(feats, np.array(labels), len(demo.SHAPES))
    state = {"task": "classification", "mode": "frozen", "classes": list(demo.SHAPES),
             "backbone": BACKBONE, "backbone_weights": loaded.weights_source,
             "preprocessing": {"key": extractor.key}, "head": head.state(),
             "model_version": 3, "loaded_model": loaded}
    return state, head.predict_proba(feats)


def test_classifier_round_trip_predicts_the_same(images, tmp_path):
    _, files, labels = images
    state, probs = classification_state(files, labels)
    path = tmp_path / "model.pt"
    save_model(path, state)
    predictor = load_model(path)
    assert predictor.classes == list(demo.SHAPES) and predictor.model_version == 3
    assert predictor.warning is None
    results = predictor.predict([load_image(f) for f in files[:6]] + [str(f) for f in files[6:]])
    assert [r["label"] for r in results] == [demo.SHAPES[i] for i in probs.argmax(1)]
    np.testing.assert_allclose([r["probability"] for r in results], probs.max(1), atol=1e-3)
    # the backbone is random init: without its stored weights a fresh one would disagree
    other = create_model(BACKBONE, Path("no-weights"), CPU, pretrained=False, num_classes=0)
    stored = read_state(path)["backbone_state"]
    assert any(not torch.equal(v, other.model.state_dict()[k]) for k, v in stored.items()
               if v.is_floating_point())


def test_segmenter_round_trip_predicts_the_same_masks(images, tmp_path):
    folder, files, _ = images
    loaded = create_model(BACKBONE, Path("no-weights"), CPU, pretrained=False, num_classes=0,
                          dynamic_img_size=True)
    extractor = FeatureExtractor(loaded, batch_size=4)
    imgs = [load_image(f) for f in files[:4]]
    grids = extractor.patch_features(imgs, 96)
    k = len(demo.SEG_CLASSES)
    targets, weights = zip(*(heads.mask_to_patch_targets(
        demo.ground_truth_mask(folder, f.name), g.shape[:2], k) for f, g in zip(files, grids)))
    head = heads.train_seg_head(grids, list(targets), list(weights), k)
    state = {"task": "segmentation", "mode": "frozen", "classes": list(demo.SEG_CLASSES),
             "backbone": BACKBONE, "preprocessing": {"key": extractor.patch_key(96),
                                                     "long_side": 96},
             "head": head.state(), "model_version": 1, "loaded_model": loaded}
    save_model(tmp_path / "seg.pt", state)
    predictor = load_model(tmp_path / "seg.pt")
    assert predictor.warning is None
    for img, grid, result in zip(imgs, grids, predictor.predict(imgs)):
        expected, _ = head.predict_mask(grid, (img.height, img.width))
        assert result["mask"].dtype == np.uint8 and result["mask"].shape == expected.shape
        np.testing.assert_array_equal(result["mask"], expected)
        assert 1 <= result["mask"].min() and result["mask"].max() <= k


def test_file_is_plain_data_and_written_atomically(images, tmp_path):
    _, files, labels = images
    state, _ = classification_state(files, labels)
    path = tmp_path / "model.pt"
    save_model(path, state)
    plain = torch.load(path, weights_only=True)  # no pickled objects in the file
    assert plain["format"] == FORMAT and "loaded_model" not in plain
    before = path.read_bytes()
    bad = dict(state, head={"weight": object()})
    with pytest.raises(TypeError):
        save_model(path, bad)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    no_backbone = {k: v for k, v in state.items() if k != "loaded_model"}
    with pytest.raises(ValueError, match="backbone"):
        save_model(tmp_path / "x.pt", no_backbone)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable hitl model"):
        load_model(tmp_path / "junk.pt")


def test_export_model_format_writes_a_loadable_file(images, tmp_path):
    _, files, labels = images
    state, probs = classification_state(files, labels)
    store = Store(tmp_path / "s" / "hitl.duckdb")
    (tmp_path / "out").mkdir()
    try:
        path = export(store, "model", tmp_path / "out", model_state=state)
    finally:
        store.close()
    assert path == tmp_path / "out" / "model.pt"
    predictor = load_model(path)
    assert predictor.predict([files[0]])[0]["label"] == demo.SHAPES[int(probs[0].argmax())]


def test_cli_exports_the_trainers_saved_model(images, tmp_path):
    _, files, labels = images
    state, probs = classification_state(files, labels)
    session = tmp_path / "session"
    save_model(session / "checkpoints" / "model_state.pt", state)
    result = subprocess.run([sys.executable, "-m", "hitl", "export", "--session", str(session),
                             "--format", "model", "--out", str(tmp_path / "m.pt")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    predictor = load_model(tmp_path / "m.pt")
    assert predictor.predict([files[1]])[0]["label"] == demo.SHAPES[int(probs[1].argmax())]


def finetune_checkpoint(ft) -> dict:
    """The dict the finetuner saves, as the trainer publishes it in state['head']."""
    path_dict = {"name": ft.name, "num_classes": ft.num_classes, "lr": ft.lr,
                 "state_dict": ft.model.state_dict()}
    return dict(path_dict, kind=ft.kind, **{ft.size_field: ft.size})


def test_finetuned_models_round_trip(images, tmp_path):
    """Untrained is enough: a random init differs per instance, so only the stored one matches."""
    from hitl.ml.finetune import ClassifierFinetuner, SegFinetuner

    _, files, _ = images
    imgs = [load_image(f) for f in files[:4]]
    ft = ClassifierFinetuner("test_resnet", 3, CPU, size=48)
    save_model(tmp_path / "cls.pt", {
        "task": "classification", "mode": "finetune", "classes": list(demo.SHAPES),
        "backbone": "test_resnet", "preprocessing": {"input_size": 48},
        "head": finetune_checkpoint(ft), "model_version": 2})
    expected = ft.predict_proba(imgs)
    got = load_model(tmp_path / "cls.pt").predict(imgs)
    assert [r["label"] for r in got] == [demo.SHAPES[i] for i in expected.argmax(1)]
    np.testing.assert_allclose([r["probability"] for r in got], expected.max(1), atol=1e-5)

    seg = SegFinetuner("test_resnet", len(demo.SEG_CLASSES), CPU, size=64)
    save_model(tmp_path / "seg.pt", {
        "task": "segmentation", "mode": "finetune", "classes": list(demo.SEG_CLASSES),
        "backbone": "test_resnet", "preprocessing": {"size": 64},
        "head": finetune_checkpoint(seg), "model_version": 2})
    for img, result in zip(imgs[:2], load_model(tmp_path / "seg.pt").predict(imgs[:2])):
        np.testing.assert_array_equal(result["mask"], seg.predict_mask(img))
