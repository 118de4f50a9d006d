"""Coupled U-Net: shapes, parameter counts, input validation."""
import pytest
import torch

import mmdiff
from mmdiff.config import PAPER, TINY, ModelConfig
from mmdiff.nn.attention import RSMMA
from mmdiff.nn.unet import block_specs
from model_checks import dead_parameters


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def meta_model(cfg):
    with torch.device("meta"):
        return mmdiff.build_model(cfg)


def test_presets_exposed():
    assert set(mmdiff.PRESETS) >= {"paper", "tiny"}
    assert mmdiff.PRESETS["paper"].video_shape == (16, 3, 64, 64)
    assert mmdiff.PRESETS["paper"].audio_shape == (1, 25_600)
    assert mmdiff.PRESETS["paper"].audio_rate == 16_000 and mmdiff.PRESETS["paper"].fps == 10
    assert mmdiff.PRESETS["tiny"].duration == pytest.approx(1.6)


def test_paper_parameter_count_is_the_public_code_s():
    assert n_params(meta_model("paper")) == 133_675_524      # the released model (tests/test_core_released.py)


def test_rsmma_parameters_match_closed_form():
    # Each RS-MMA block at width C: 2 GroupNorms (2C each), 2 qkv Linear (3C^2 + 3C), 2 out Linear (C^2 + C).
    model = meta_model("paper")
    blocks = [m for m in model.modules() if isinstance(m, RSMMA)]
    widths = [b.video_qkv.in_features for b in blocks]
    # Table A.1: scales 2,3,4 (128 * (2,3,4)): 2 encoder + 3 decoder blocks each, plus the middle block.
    assert sorted(widths) == sorted([256] * 5 + [384] * 5 + [512] * 5 + [512])
    assert sum(n_params(b) for b in blocks) == sum(8 * c * c + 12 * c for c in widths)
    assert [b.window for b in blocks if b.video_qkv.in_features == 256] == [1] * 5
    assert {b.window for b in blocks if b.video_qkv.in_features == 384} == {4}
    assert sorted(b.window for b in blocks if b.video_qkv.in_features == 512) == [8] * 5 + [16]


def test_audio_dilations_cycle_to_2_pow_10():
    down, middle, up = block_specs(ModelConfig())               # "mirrored", the default of older checkpoints
    dil = [s.dilation for s in down + middle]
    assert dil[:11] == [2 ** k for k in range(11)] and dil[11] == 1
    assert [s.dilation for s in up] == [1024, 512, 256, 256, 128, 64, 32, 32, 16, 8, 4, 4, 2, 1, 1]


def test_public_audio_dilations():
    down, middle, up = block_specs(PAPER)                       # the public code's order (2^(d mod 10), d from 1)
    assert [s.dilation for s in down] == [2, 4, 8, 16, 32, 64, 128, 256, 512, 1, 2]
    assert [s.dilation for s in middle] == [4, 4]
    assert [s.dilation for s in up] == [2, 1, 512, 256, 256, 128, 64, 32, 32, 16, 8, 4, 4, 2, 1]


def test_tiny_forward_shapes_and_size():
    model = mmdiff.build_model("tiny")
    assert 1e6 < n_params(model) < 8e6
    v = torch.randn(2, *TINY.video_shape)
    a = torch.randn(2, *TINY.audio_shape)
    ev, ea = model(v, a, torch.tensor([0, 999]))
    assert ev.shape == (2, 16, 3, 32, 32) and ea.shape == (2, 1, 12_800)
    # zero-initialised output layers: an untrained model predicts exactly zero noise
    assert ev.abs().max() == 0 and ea.abs().max() == 0


def test_paper_forward_shapes_on_meta_device():
    model = meta_model("paper")
    with torch.device("meta"):
        ev, ea = model(torch.randn(1, 16, 3, 64, 64), torch.randn(1, 1, 25_600), torch.tensor([3]))
    assert ev.shape == (1, 16, 3, 64, 64) and ea.shape == (1, 1, 25_600)


def test_streams_are_coupled(perturbed):
    torch.manual_seed(0)
    model = perturbed(mmdiff.build_model("tiny")).eval()
    v = torch.randn(1, *TINY.video_shape)
    a = torch.randn(1, *TINY.audio_shape)
    t = torch.tensor([500])
    with torch.no_grad():
        ev1, ea1 = model(v, a, t)
        ev2, ea2 = model(v, a + 1.0, t)     # change only the audio
    assert (ev1 - ev2).abs().max() > 1e-6   # ... and the video prediction moves: RS-MMA couples the streams


@pytest.mark.parametrize("video,audio,t,match", [
    (torch.randn(1, 16, 3, 64, 64), torch.randn(1, 1, 12_800), torch.tensor([1]), r"video must have shape \(B, 16, 3, 32, 32\)"),
    (torch.randn(1, 16, 3, 32, 32), torch.randn(1, 1, 12_000), torch.tensor([1]), r"audio must have shape \(B, 1, 12800\)"),
    (torch.randn(1, 16, 3, 32, 32), torch.randn(1, 1, 12_800), torch.tensor([1.0]), r"t must be an integer tensor"),
    (torch.randn(2, 16, 3, 32, 32), torch.randn(1, 1, 12_800), torch.tensor([1, 2]), r"batch"),
])
def test_bad_inputs_get_clear_errors(video, audio, t, match):
    model = mmdiff.build_model("tiny")
    with pytest.raises(ValueError, match=match):
        model(video, audio, t)


def test_integer_video_is_rejected():
    model = mmdiff.build_model("tiny")
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.zeros(1, 16, 3, 32, 32, dtype=torch.uint8), torch.randn(1, 1, 12_800), torch.tensor([1]))


def test_config_round_trip_and_validation():
    d = TINY.to_dict()
    assert ModelConfig.from_dict(d) == TINY
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ValueError, match="same time"):
        TINY.replace(audio_samples=25_600)
    with pytest.raises(ValueError, match="inference_shift"):
        TINY.replace(inference_shift="sometimes")
    with pytest.raises(ValueError, match="unknown preset"):
        mmdiff.build_model("huge")


def test_single_modality_submodels():
    video_only = mmdiff.build_model(TINY.replace(modalities=("video",)))
    ev, ea = video_only(torch.randn(1, *TINY.video_shape), None, torch.tensor([5]))
    assert ev.shape == (1, *TINY.video_shape) and ea is None
    assert not any(isinstance(m, RSMMA) for m in video_only.modules())
    audio_only = mmdiff.build_model(TINY.replace(modalities=("audio",)))
    ev, ea = audio_only(None, torch.randn(1, *TINY.audio_shape), torch.tensor([5]))
    assert ev is None and ea.shape == (1, *TINY.audio_shape)


def test_every_parameter_learns():
    # Zero-initialised residual outputs must not block gradients for good: after two optimiser steps
    # every parameter has a non-zero gradient (a zero-init factorised head once froze the whole video path).
    torch.manual_seed(0)
    dead, _, _ = dead_parameters(mmdiff.build_model(TINY), TINY)
    assert not dead, dead
