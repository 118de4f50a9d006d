"""CLAP extractor: what runs without the optional laion-clap package (error path, checkpoint
filtering, encoder detection, input preparation)."""
import importlib.util

import numpy as np
import pytest
import torch

from eval.features import load_extractor
from eval.features.clap import (CLIP_SAMPLES, OptionalDependencyError, clap_audio_state, clap_model_name,
                                int16_round_trip, prepare, repeat_pad)

HAS_LAION_CLAP = importlib.util.find_spec("laion_clap") is not None


@pytest.mark.skipif(HAS_LAION_CLAP, reason="laion-clap is installed here; this checks the message without it")
def test_missing_package_says_how_to_install():
    with pytest.raises(OptionalDependencyError, match="requirements-clap.txt") as e:
        load_extractor("clap")
    assert "laion-clap==1.1.7" in str(e.value)


def fake_checkpoint(width=768, fusion=False):
    sd = {
        "module.audio_branch.spectrogram_extractor.stft.conv_real.weight": torch.zeros(513, 1, 1024),
        "module.audio_branch.patch_embed.proj.weight": torch.zeros(96, 1, 4, 4),
        "module.audio_projection.0.weight": torch.zeros(512, width),
        "module.audio_projection.0.bias": torch.zeros(512),
        "module.audio_projection.2.weight": torch.zeros(512, 512),
        "module.audio_projection.2.bias": torch.zeros(512),
        "module.text_branch.embeddings.position_ids": torch.zeros(1, 514),
        "module.text_projection.0.weight": torch.zeros(512, 768),
        "module.logit_scale_a": torch.tensor(2.0),
    }
    if fusion:
        sd["module.audio_branch.fusion_model.local_att.0.weight"] = torch.zeros(1)
    return {"epoch": 45, "state_dict": sd}


def test_checkpoint_filtering():
    branch, proj = clap_audio_state(fake_checkpoint())
    assert set(branch) == {"spectrogram_extractor.stft.conv_real.weight", "patch_embed.proj.weight"}
    assert set(proj) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    # A bare state dict without the DDP prefix works too.
    bare = {k[len("module."):]: v for k, v in fake_checkpoint()["state_dict"].items()}
    assert clap_audio_state(bare)[1].keys() == proj.keys()
    with pytest.raises(KeyError, match="audio_branch"):
        clap_audio_state({"state_dict": {"module.text_branch.x": torch.zeros(1)}})


def test_encoder_detection():
    assert clap_model_name(*clap_audio_state(fake_checkpoint(768))) == "HTSAT-tiny"
    assert clap_model_name(*clap_audio_state(fake_checkpoint(1024))) == "HTSAT-base"
    with pytest.raises(ValueError, match="fusion"):
        clap_model_name(*clap_audio_state(fake_checkpoint(fusion=True)))
    with pytest.raises(ValueError, match="width 640"):
        clap_model_name(*clap_audio_state(fake_checkpoint(640)))


def test_input_preparation():
    # repeat-pad: floor(n / T) whole copies, then zeros; longer clips keep their head.
    w = np.array([[1.0, 2.0, 3.0]], np.float32)
    assert repeat_pad(w, 8).tolist() == [[1, 2, 3, 1, 2, 3, 0, 0]]
    assert repeat_pad(np.arange(10.0)[None], 4).tolist() == [[0, 1, 2, 3]]
    # int16 round trip: clipped and quantised to multiples of 1/32767.
    q = int16_round_trip(np.array([0.5, 2.0, -1.5, 1e-6], np.float32))
    np.testing.assert_allclose(q, [16383 / 32767, 1.0, -1.0, 0.0])
    # 1.6 s at 8 kHz -> 48 kHz, 10 s.
    x = prepare(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 12800)).astype(np.float32), 8000)
    assert x.shape == (2, CLIP_SAMPLES) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, :76800], x[:, 76800:153600])          # 76,800 samples repeated


def fake_laion_clap(root):
    """A stand-in laion_clap tree whose __init__ files must never run (the real ones reach for the hub)."""
    pkg = root / "laion_clap"
    (pkg / "clap_module" / "model_configs").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('laion_clap/__init__.py ran')\n")
    (pkg / "clap_module" / "__init__.py").write_text("raise RuntimeError('clap_module/__init__.py ran')\n")
    (pkg / "clap_module" / "utils.py").write_text("WIDTH = 96\n")
    (pkg / "clap_module" / "htsat.py").write_text("from .utils import WIDTH\n")
    return pkg


def test_htsat_is_imported_privately_and_twice(tmp_path, monkeypatch):
    # Regression: the bare 'laion_clap' package put into sys.modules had no __spec__, so the next
    # find_spec('laion_clap') raised ValueError: a second CLAP extractor in one process failed to load.
    import sys

    from eval.features import clap

    fake_laion_clap(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [n for n in sys.modules if n.startswith((clap.PRIVATE_PACKAGE, "laion_clap"))]:
        monkeypatch.delitem(sys.modules, name)
    try:
        htsat, root = clap.import_htsat()
        assert htsat.WIDTH == 96 and root == tmp_path / "laion_clap"
        again, _ = clap.import_htsat()
        assert again is htsat
        assert "laion_clap" not in sys.modules               # laion_clap itself is left alone
        assert clap._laion_clap_dir() == root
    finally:
        for name in [n for n in sys.modules if n.startswith(clap.PRIVATE_PACKAGE)]:
            del sys.modules[name]


class RecordingExtractor:
    """Stands in for an audio extractor: feature = (sum, length) of what it was given; records calls."""

    def __init__(self, zero_pad_invariant):
        self.zero_pad_invariant = zero_pad_invariant
        self.calls = []

    def __call__(self, wav, sample_rate):
        self.calls.append((wav.shape, sample_rate))
        return np.stack([wav.sum(1), np.full(len(wav), wav.shape[1])], 1).astype(np.float32)


def test_repeat_padding_extractor_sees_each_clip_unpadded():
    # CLAP repeat-pads a short clip; zero-padding it first to the longest clip of its batch would
    # make its features depend on the other clips of the batch. The protocol groups by length.
    from mmdiff.data.av_io import AVClip as Clip
    from eval.features.clap import CLAPExtractor
    from eval.bank import _audio_features

    assert CLAPExtractor.zero_pad_invariant is False
    clips = [Clip(np.zeros((1, 4, 4, 3), np.uint8), np.ones(n, np.float32), 10.0, rate, f"c{k}")
             for k, (n, rate) in enumerate([(100, 8000), (80, 8000), (100, 8000), (50, 16000)])]
    ex = RecordingExtractor(zero_pad_invariant=False)
    feats = _audio_features(ex, clips)
    assert feats[:, 1].tolist() == [100, 80, 100, 50]            # every clip at its own length
    assert sorted(ex.calls) == [((1, 50), 16000), ((1, 80), 8000), ((2, 100), 8000)]
    ex = RecordingExtractor(zero_pad_invariant=True)             # AudioCLIP: one padded call per rate
    feats = _audio_features(ex, clips)
    assert feats[:, 1].tolist() == [100, 100, 100, 50] and len(ex.calls) == 2


def test_identity_names_the_encoder_before_loading(tmp_path, monkeypatch):
    # The identity goes into cache keys and results before the first batch; it read
    # "audio_encoder": None because the encoder was only known once the network was built.
    fake_laion_clap(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for width, name in ((768, "HTSAT-tiny"), (1024, "HTSAT-base")):
        ckpt = tmp_path / f"clap-{width}.pt"
        torch.save(fake_checkpoint(width), ckpt)
        ex = load_extractor("clap", checkpoint=ckpt, device="cpu")
        ident = ex.identity()
        assert ident["audio_encoder"] == name and not ex._loaded
        assert ident["laion_clap"] == "unknown"                  # the stand-in has no package metadata
        assert ident["weights_file"] == ckpt.name and len(ident["weights_sha256"]) == 64
