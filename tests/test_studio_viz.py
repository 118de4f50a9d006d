"""The alignment view's pieces: librosa's mel spectrogram and onsets (AV-Align's), closed-form mel bands, onset
times of a click track, frame strip."""
from __future__ import annotations

import numpy as np
import pytest

from mmdiff.data.av_io import AVClip
from mmdiff.audio_features import ONSET_RATE
from mmdiff.viz import audio_view, clip_figure, compare_figure, frame_strip, preview_grid, save_png


def slaney_mel(f):
    """Slaney's mel scale (librosa's default), closed form: linear to 1 kHz, logarithmic above."""
    f = np.asarray(f, np.float64)
    return np.where(f < 1000, 3 * f / 200, 15 + 27 * np.log(np.maximum(f, 1e-9) / 1000) / np.log(6.4))


def test_view_is_librosas_mel_spectrogram_and_onset_strength():
    import librosa

    y = np.random.default_rng(0).normal(0, 0.1, ONSET_RATE).astype(np.float32)   # 1 s at the metric's rate
    view = audio_view(y, ONSET_RATE)
    mel = librosa.feature.melspectrogram(y=y, sr=ONSET_RATE, n_mels=64)
    np.testing.assert_array_equal(view.mel_db, librosa.power_to_db(mel, ref=np.max, top_db=80.0))
    env = librosa.onset.onset_strength(y=y, sr=ONSET_RATE)
    np.testing.assert_allclose(view.onset_env, env / env.max(), rtol=1e-6)
    assert view.mel_db.shape == (64, len(env)) and view.times[1] == pytest.approx(512 / ONSET_RATE)


def test_sine_lands_in_the_right_mel_band():
    rate = 8000
    t = np.arange(rate) / rate
    view = audio_view(0.5 * np.sin(2 * np.pi * 1000 * t), rate, n_mels=40)
    # bands equally spaced on the mel scale from 0 Hz to the clip's Nyquist frequency (4 kHz)
    expected = np.linspace(0, slaney_mel(4000), 42)[1:-1]
    np.testing.assert_allclose(slaney_mel(view.centres), expected, atol=1e-6)
    band = np.argmax(view.mel_db[:, len(view.times) // 2])
    assert band == np.argmin(np.abs(expected - slaney_mel(1000)))
    assert view.mel_db.shape[0] == 40 and view.mel_db.max() == 0 and view.mel_db.min() >= -80


def click_bursts(rate, clicks, length_s=1.6):
    a = np.zeros(int(length_s * rate), np.float32)
    rng = np.random.default_rng(0)
    for c in clicks:                                   # 40-ms noise bursts starting at each click
        s = int(c * rate)
        a[s:s + int(0.04 * rate)] = rng.normal(0, 0.3, int(0.04 * rate))
    return a


@pytest.mark.parametrize("rate", [8000, 16000])
def test_onsets_at_the_clicks_are_av_aligns(rate):
    from eval.av_align import audio_peak_times

    clicks = [0.3, 0.9, 1.3]
    a = click_bursts(rate, clicks)
    view = audio_view(a, rate)
    hop = 512 / ONSET_RATE
    assert view.onset_env.max() == pytest.approx(1.0)
    def late(t):            # within two frames after the click: the flux peaks once the burst fills the window
        return np.all((t >= clicks) & (t <= np.add(clicks, 2 * hop)))

    assert len(view.onsets) == 3 and late(view.onsets)                     # one onset per click
    near = [np.abs(view.times - c) < 0.1 for c in clicks]                  # the envelope peaks there too
    assert late(np.array([view.times[m][np.argmax(view.onset_env[m])] for m in near]))
    assert view.onset_env[~np.any(near, axis=0)].max() < 0.2               # and is low elsewhere
    np.testing.assert_array_equal(view.onsets, audio_peak_times(a, rate))   # what the metric counts


def test_onset_of_silence_is_zero():
    view = audio_view(np.zeros(8000, np.float32), 8000)
    assert not view.onset_env.any() and len(view.onsets) == 0
    with pytest.raises(ValueError, match="non-empty"):
        audio_view(np.zeros(0, np.float32), 8000)


def test_frame_strip_layout():
    v = np.stack([np.full((4, 5, 3), k, np.uint8) for k in range(40)])
    strip, idx = frame_strip(v, max_frames=8)
    assert strip.shape == (4, 5 * 8, 3) and idx[0] == 0 and idx[-1] == 39
    assert [strip[0, 5 * j, 0] for j in range(8)] == list(idx)
    with pytest.raises(ValueError, match="uint8"):
        frame_strip(v.astype(np.float32))


def test_figures_render_to_png(tmp_path):
    from PIL import Image

    v = np.random.default_rng(0).integers(0, 255, (16, 32, 32, 3), dtype=np.uint8)
    a = np.random.default_rng(1).normal(0, 0.1, 12800).astype(np.float32)
    one = save_png(clip_figure(AVClip(v, a, 10, 8000, "x")), tmp_path / "one.png")
    two = save_png(compare_figure([AVClip(v, a, 10, 8000, "a"), AVClip(None, a, 10, 8000, "b"),
                                   AVClip(v, None, 10, 8000, "c")]), tmp_path / "three.png")
    h1, h3 = Image.open(one).size[1], Image.open(two).size[1]
    assert h3 == pytest.approx(3 * h1, rel=0.02)
    assert not list(tmp_path.glob(".*"))               # no temp files left behind


def test_preview_grid_shape():
    v = np.zeros((2, 16, 8, 8, 3), np.uint8)
    v[1, 10] = 200
    g = preview_grid(v, frames=(0, 10), scale=2)
    assert g.shape == (2 * 8 * 2, 2 * 8 * 2, 3)
    assert g[16:, 16:].min() == 200 and g[:16].max() == 0
