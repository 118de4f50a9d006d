"""eval.cleanliness: closed forms, and real synthetic clips vs noisy / white-noise ones."""
import numpy as np
import pytest
import torch

from eval.cleanliness import AUDIO_RMS_MAX, Criterion, audio_levels, from_generated, pixel_hf, score_clips
from mmdiff.data.synthetic import make_clip


def test_pixel_hf_closed_forms():
    checker = (np.indices((8, 8)).sum(0) % 2).astype(np.float64)            # adjacent pixels differ by 1
    video = np.repeat(checker[None, None, :, :, None], 3, axis=4)           # (1, 1, 8, 8, 3)
    assert pixel_hf(video)[0] == pytest.approx(1.0)
    flat = np.full((1, 2, 8, 8, 3), 200, np.uint8)
    assert pixel_hf(flat)[0] == 0.0
    ramp = np.broadcast_to(np.arange(8, dtype=np.float64)[None, None, None, :, None] / 10, (1, 1, 8, 8, 3))
    assert pixel_hf(ramp)[0] == pytest.approx(0.5 * 0.01)                   # only horizontal steps of 0.1


def test_audio_levels_closed_forms():
    rate = 8000
    t = np.arange(rate) / rate
    sine = 0.5 * np.sin(2 * np.pi * 440 * t)
    rms, floor = audio_levels(sine[None], rate)
    assert rms[0] == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)
    assert floor[0] == pytest.approx(0.5 / np.sqrt(2), rel=1e-2)            # no quiet part: floor = level
    burst = np.zeros(rate)
    burst[:rate // 10] = 0.9                                                # one event, silence after it
    rms, floor = audio_levels(burst[None], rate)
    assert floor[0] == 0.0 and rms[0] == pytest.approx(0.9 * np.sqrt(0.1))


def clips(seed, n=24):
    cs = [make_clip(i, seed, 16, 10, 32, 8000) for i in range(n)]
    return np.stack([c.video for c in cs]), np.stack([c.audio for c in cs])


def test_real_clips_are_clean_and_noise_is_not():
    criterion = Criterion.from_real(score_clips(*clips(99), 8000))
    video, audio = clips(5)
    assert criterion.clean(score_clips(video, audio, 8000)).all()          # another draw of real clips
    rng = np.random.default_rng(0)
    noisy = np.clip(video + rng.normal(0, 20, video.shape), 0, 255).astype(np.uint8)
    assert not criterion.clean(score_clips(noisy, audio, 8000)).any()      # pixel noise
    hiss = audio + rng.normal(0, 0.05, audio.shape)                          # RMS << 0.25, but between events
    assert not criterion.clean(score_clips(video, hiss, 8000)).any()
    white = rng.normal(0, 0.4, audio.shape)
    assert (score_clips(video, white, 8000).audio_rms > AUDIO_RMS_MAX).all()


def test_from_generated_matches_the_file_conversion():
    video = torch.tensor([-1.0, -0.5, 0.0, 1.0]).reshape(1, 1, 1, 1, 4).expand(1, 1, 3, 1, 4)   # (N, F, 3, H, W)
    frames, audio = from_generated(video, torch.zeros(1, 1, 10))
    assert frames.shape == (1, 1, 1, 4, 3) and frames.dtype == np.uint8
    assert frames[0, 0, 0, :, 0].tolist() == [0, 64, 128, 255]
    assert audio.shape == (1, 10)
