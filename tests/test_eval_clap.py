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
