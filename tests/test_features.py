"""Feature extraction with real tiny timm models, and the on-disk feature cache."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from hitl.backbones import create_model
from hitl.ml.features import FeatureCache, FeatureExtractor

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def vit() -> FeatureExtractor:
    torch.manual_seed(0)
    loaded = create_model(
        "test_vit", Path("."), CPU, pretrained=False, num_classes=0, dynamic_img_size=True
    )
    return FeatureExtractor(loaded, batch_size=4)


@pytest.fixture(scope="module")
def resnet() -> FeatureExtractor:
    torch.manual_seed(0)
    loaded = create_model(
        "test_resnet", Path("."), CPU, pretrained=False, num_classes=0, dynamic_img_size=True
    )
    return FeatureExtractor(loaded, batch_size=4)


def image(width: int, height: int, seed: int = 0, mode: str = "RGB") -> PIL.Image.Image:
    """A smooth random picture (gradients plus noise), so resizing changes it a little."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) * 127 / (width + height)], -1)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    return PIL.Image.fromarray(pixels).convert(mode)


# -- extractor ---------------------------------------------------------------------------


@pytest.mark.parametrize("which, dim", [("vit", 64), ("resnet", 96)])
def test_global_features_shape_dtype(which, dim, request):
    fe: FeatureExtractor = request.getfixturevalue(which)
    images = [image(200, 150, seed=i) for i in range(6)]  # more than one batch
    feats = fe.global_features(images)
    assert feats.shape == (6, dim)
    assert feats.dtype == np.float16
    assert np.isfinite(feats).all()
    assert not np.allclose(feats[0], feats[1])
    assert fe.global_features([]).shape == (0, dim)


def test_global_features_deterministic_and_batch_independent(vit):
    images = [image(180, 120, seed=i) for i in range(5)]
    a = vit.global_features(images)
    b = vit.global_features(images[::-1])[::-1]
    np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=2e-3)
    single = vit.global_features(images[2:3])
    np.testing.assert_allclose(single[0].astype(np.float32), a[2].astype(np.float32), atol=2e-3)


def test_global_features_convert_to_rgb(vit):
    rgb = image(160, 160, seed=3)
    rgba = rgb.convert("RGBA")
    gray = rgb.convert("L")
    feats = vit.global_features([rgb, rgba, gray])
    np.testing.assert_array_equal(feats[0], feats[1])
    assert feats.shape == (3, 64)


def test_global_matches_plain_timm_pipeline(vit):
    """Our fast preprocessing equals timm's own eval transform, end to end."""
    import timm.data

    img = image(300, 200, seed=5)
    cfg = timm.data.resolve_data_config({}, model=vit.model)
    x = timm.data.create_transform(**cfg)(img).unsqueeze(0)
    with torch.inference_mode():
        want = vit.model.forward_head(vit.model.forward_features(x), pre_logits=True)
    got = vit.global_features([img])
    np.testing.assert_allclose(got[0].astype(np.float32), want[0].numpy(), atol=5e-3, rtol=5e-3)


def test_keys_are_filesystem_safe_and_distinct(vit, resnet):
    for key in (vit.key, resnet.key, vit.patch_key(512)):
        assert key and all(c.isalnum() or c in "._-" for c in key)
    assert vit.key != resnet.key
    assert vit.patch_key(512) != vit.patch_key(256) != vit.key
    assert "test_vit" in vit.key and "160x160" in vit.key
    assert "randinit" in vit.key  # random features must never be mistaken for pretrained ones


def test_working_size(vit, resnet):
    assert vit.patch_size == 16 and resnet.patch_size == 32
    assert vit.working_size(1000, 500, 320) == (320, 160)
    assert vit.working_size(500, 1000, 320) == (160, 320)
    assert vit.working_size(640, 480, 300) == (304, 224)  # 300 -> 18.75 patches -> 19
    assert vit.working_size(4000, 10, 256) == (256, 16)  # at least one patch
    w, h = resnet.working_size(333, 777, 500)
    assert w % 32 == 0 and h % 32 == 0 and h == 512


@pytest.mark.parametrize("which", ["vit", "resnet"])
def test_patch_grids_for_mixed_sizes(which, request):
    fe: FeatureExtractor = request.getfixturevalue(which)
    sizes = [(200, 100), (100, 200), (150, 150), (200, 100), (64, 48), (201, 99)]
    images = [image(w, h, seed=i) for i, (w, h) in enumerate(sizes)]
    grids = fe.patch_features(images, long_side=128)
    assert len(grids) == len(images)
    for (w, h), grid in zip(sizes, grids):
        ww, wh = fe.working_size(w, h, 128)
        assert grid.shape == (wh // fe.patch_size, ww // fe.patch_size, fe.model.num_features)
        assert grid.dtype == np.float16
    # same input, same grid, whatever else is in the batch
    alone = fe.patch_features([images[3]], long_side=128)[0]
    np.testing.assert_allclose(alone.astype(np.float32), grids[3].astype(np.float32), atol=2e-3)
    assert not np.allclose(grids[0].astype(np.float32), grids[3].astype(np.float32))
    assert fe.patch_features([], long_side=128) == []


def test_vit_patch_grid_equals_tokens(vit):
    """The grid is the model's patch tokens in raster order, prefix tokens dropped."""
    img = image(96, 64, seed=9)
    grid = vit.patch_features([img], long_side=96)[0]
    x = vit._to_batch([np.asarray(img.resize((96, 64), vit._resample, reducing_gap=3.0))])
    with torch.inference_mode():
        tokens = vit.model.forward_features(x)[0, vit.model.num_prefix_tokens :]
    assert grid.shape == (4, 6, 64)
    np.testing.assert_allclose(grid[1, 2].astype(np.float32), tokens[1 * 6 + 2].numpy(), atol=5e-3)


def test_fixed_size_vit_refuses_patch_features():
    loaded = create_model(
        "test_vit", Path("."), CPU, pretrained=False, num_classes=0, dynamic_img_size=False
    )
    with pytest.raises(ValueError, match="dynamic_img_size"):
        FeatureExtractor(loaded).patch_features([image(100, 100)], 64)


# -- cache -------------------------------------------------------------------------------


def feats(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_cache_global_round_trip_and_restart(tmp_path):
    cache = FeatureCache(tmp_path, "model_a")
    assert cache.global_ids().size == 0
    ids, f = cache.get_global()
    assert ids.size == 0 and f.shape[0] == 0

    cache.put_global(np.array([3, 1]), feats(2, seed=1))
    cache.put_global(np.array([7]), feats(1, seed=2))
    assert cache.global_ids().tolist() == [1, 3, 7]
    ids, f = cache.get_global()
    assert ids.tolist() == [1, 3, 7]
    assert f.dtype == np.float16
    np.testing.assert_array_equal(f[1], feats(2, seed=1)[0].astype(np.float16))

    reopened = FeatureCache(tmp_path, "model_a")
    assert reopened.global_ids().tolist() == [1, 3, 7]
    np.testing.assert_array_equal(reopened.get_global()[1], f)
    assert FeatureCache(tmp_path, "model_b").global_ids().size == 0


def test_cache_index_follows_puts(tmp_path):
    cache = FeatureCache(tmp_path, "k")
    cache.put_global(np.array([5]), feats(1))
    assert cache.global_ids().tolist() == [5]  # index now loaded
    cache.put_global(np.array([2, 5]), feats(2))
    assert cache.global_ids().tolist() == [2, 5]


def test_cache_dedup_last_write_wins(tmp_path):
    cache = FeatureCache(tmp_path, "k")
    cache.put_global(np.array([1, 2]), np.ones((2, 4)))
    cache.put_global(np.array([2]), np.full((1, 4), 2.0))
    ids, f = cache.get_global()
    assert ids.tolist() == [1, 2]
    assert f[:, 0].tolist() == [1.0, 2.0]
    # and after a restart, in the order written
    ids, f = FeatureCache(tmp_path, "k").get_global()
    assert f[:, 0].tolist() == [1.0, 2.0]


def test_cache_merges_many_small_shards(tmp_path):
    cache = FeatureCache(tmp_path, "k")
    fanout = FeatureCache.MERGE_FANOUT
    n = fanout * fanout + 3
    for i in range(n):
        cache.put_global(np.array([i, 0]), np.full((2, 4), float(i)))
    assert len(list(cache.dir.glob("global-*.npz"))) < 2 * fanout
    ids, f = cache.get_global()
    assert ids.tolist() == list(range(n))
    assert f[0, 0] == n - 1  # id 0 was last written in the final shard
    cache.put_global(np.array([0]), np.full((1, 4), -1.0))
    ids, f = FeatureCache(tmp_path, "k").get_global()
    assert f[0, 0] == -1 and len(ids) == n


def test_cache_ignores_tmp_and_broken_files(tmp_path):
    cache = FeatureCache(tmp_path, "k")
    cache.put_global(np.array([1]), feats(1))
    (cache.dir / "global-99999999999999999999-dead.npz.123.tmp").write_bytes(b"half a file")
    (cache.dir / "global-99999999999999999998-L0-beef.npz").write_bytes(b"not a zip")
    fresh = FeatureCache(tmp_path, "k")
    assert fresh.global_ids().tolist() == [1]
    assert fresh.get_global()[0].tolist() == [1]
    # writes never leave a tmp file behind
    cache.put_patches(4, np.zeros((2, 2, 3)))
    assert [p.name for p in cache.dir.rglob("*.tmp")] == [
        "global-99999999999999999999-dead.npz.123.tmp"
    ]


def test_cache_atomic_write_keeps_old_file_on_failure(tmp_path):
    cache = FeatureCache(tmp_path, "k")
    old = np.ones((2, 2, 3), np.float16)
    cache.put_patches(1, old)

    def crash_halfway(f) -> None:
        f.write(b"\x93NUMPY half a header")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cache._write_atomic(cache._patch_path(1), crash_halfway)
    np.testing.assert_array_equal(cache.get_patches(1), old)
    assert not list(cache.dir.rglob("*.tmp"))


def test_cache_patches(tmp_path):
    cache = FeatureCache(tmp_path, "k")
    assert cache.get_patches(3) is None and not cache.has_patches(3)
    grid = np.random.default_rng(0).normal(size=(32, 32, 384)).astype(np.float32)
    cache.put_patches(3, grid)
    assert cache.has_patches(3)
    got = FeatureCache(tmp_path, "k").get_patches(3)
    assert got is not None and got.dtype == np.float16 and got.shape == (32, 32, 384)
    np.testing.assert_array_equal(got, grid.astype(np.float16))


def test_cache_clear(tmp_path):
    cache = FeatureCache(tmp_path, "k")
    cache.put_global(np.array([1]), feats(1))
    cache.put_patches(1, np.zeros((1, 1, 8)))
    assert cache.global_ids().tolist() == [1]
    cache.clear()
    assert cache.global_ids().size == 0 and not cache.has_patches(1)
    cache.put_global(np.array([2]), feats(1))
    assert FeatureCache(tmp_path, "k").global_ids().tolist() == [2]


def test_cache_get_global_at_scale(tmp_path):
    """Many shards merge into one answer (its speed is measured in bench/)."""
    cache = FeatureCache(tmp_path, "k")
    rng = np.random.default_rng(0)
    block = rng.normal(size=(2000, 384)).astype(np.float16)
    for i in range(50):  # 100,000 x 384 in 50 shards
        cache.put_global(np.arange(i * 2000, (i + 1) * 2000), block)
    fresh = FeatureCache(tmp_path, "k")
    ids, f = fresh.get_global()
    assert f.shape == (100_000, 384)
    np.testing.assert_array_equal(ids, np.arange(100_000))
    np.testing.assert_array_equal(f[-2000:], block)
