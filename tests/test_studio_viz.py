"""The alignment view's pieces against closed forms: mel filters, spectrogram peaks, onset times, frame strip."""
from __future__ import annotations

import numpy as np
import pytest

from mmdiff.data.av_io import AVClip
from mmdiff.viz import (clip_figure, compare_figure, frame_strip, hz_to_mel, mel_filterbank,
                        mel_spectrogram, mel_to_hz, onset_strength, preview_grid, save_png, stft_params)


def test_mel_scale_round_trip_and_anchor():
    assert hz_to_mel(700.0) == pytest.approx(2595 * np.log10(2))
    f = np.array([0.0, 100.0, 1000.0, 3999.0])
    assert np.allclose(mel_to_hz(hz_to_mel(f)), f)


def test_filterbank_triangles_peak_at_their_centres():
    rate, n_fft, n = 8000, 256, 20
    fb = mel_filterbank(rate, n_fft, n)
    assert fb.shape == (n, 129) and fb.min() >= 0 and fb.max() <= 1
    centres = mel_to_hz(np.linspace(0, hz_to_mel(4000), n + 2))[1:-1]
    bins = np.linspace(0, 4000, 129)
    for k in (3, 10, 17):
        assert abs(bins[np.argmax(fb[k])] - centres[k]) <= 4000 / 128    # within one FFT bin


def test_sine_lands_in_the_right_mel_band():
    rate = 8000
    t = np.arange(rate) / rate
    db, times, centres = mel_spectrogram(0.5 * np.sin(2 * np.pi * 1000 * t), rate, n_mels=40)
    assert db.shape[0] == 40 and db.max() == 0 and db.min() >= -80
    band = np.argmax(db[:, len(times) // 2])
    assert abs(centres[band] - 1000) < (centres[band + 1] - centres[band - 1])
    assert times[0] >= 0 and times[-1] <= 1.0 + 1e-9


def test_onsets_peak_at_the_clicks():
    rate = 8000
    a = np.zeros(int(1.6 * rate), np.float32)
    clicks = [0.3, 0.9, 1.3]
    rng = np.random.default_rng(0)
    for c in clicks:                                   # 40-ms noise bursts starting at each click
        s = int(c * rate)
        a[s:s + 320] = rng.normal(0, 0.3, 320)
    db, times, _ = mel_spectrogram(a, rate)
    env = onset_strength(db)
    assert env.max() == pytest.approx(1.0) and env[0] == 0
    _, hop = stft_params(rate)
    peaks = [times[i] for i in np.argsort(env)[::-1]]
    found = []
    for p in peaks:                                    # the three strongest separated peaks
        if all(abs(p - f) > 0.1 for f in found):
            found.append(p)
        if len(found) == 3:
            break
    assert np.allclose(sorted(found), clicks, atol=2 * hop / rate + 0.016)


def test_onset_of_silence_is_zero():
    db, _, _ = mel_spectrogram(np.zeros(8000, np.float32), 8000)
    assert not onset_strength(db).any()


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
