"""benchmarks.sample_stats: the statistics that show where samples differ from real clips (issue 20), against
closed forms (a pure colour, grey, a sine) and against eval.change_peaks' own per-clip score."""
import math

import numpy as np
import pytest
import torch

from benchmarks.sample_stats import clip_stats, real_clips


def _sine(n: int, amplitude: float, rate: int = 8000, freq: float = 500.0) -> torch.Tensor:
    t = torch.arange(12800) / rate
    return (amplitude * torch.sin(2 * math.pi * freq * t)).expand(n, 1, -1).clone()     # (N, 1, T)


def test_pure_colour_grey_and_sine_have_their_closed_forms():
    red = torch.full((2, 16, 3, 8, 8), -1.0)
    red[:, :, 0] = 1.0                                          # (1, -1, -1): chroma 2 everywhere
    s = clip_stats(red, _sine(2, 0.5), fps=10, rate=8000)
    assert s["chroma_mean"] == pytest.approx(2.0) and s["chroma_p99"] == pytest.approx(2.0)
    assert s["audio_rms"] == pytest.approx(0.5 / math.sqrt(2), rel=1e-4)
    assert s["pixel_std"] == pytest.approx(math.sqrt(8 / 9), rel=1e-5)   # values 1, -1, -1: mean -1/3
    grey = clip_stats(torch.zeros(1, 16, 3, 8, 8), torch.zeros(1, 1, 12800), fps=10, rate=8000)
    assert grey["chroma_mean"] == 0 and grey["pixel_std"] == 0 and grey["audio_rms"] == 0
    assert grey["audio_peaks"] == 0 and grey["video_peaks"] == 0 and grey["peak_iou"] == 0


def test_peak_iou_is_the_mean_of_change_peak_align():
    from eval.change_peaks import change_peak_align
    from mmdiff.config import resolve_config

    cfg = resolve_config("tiny")
    video, audio = real_clips(cfg, 6, 99)
    s = clip_stats(video, audio, cfg.fps, cfg.audio_rate)
    frames = ((video.permute(0, 1, 3, 4, 2).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
    each = [change_peak_align(f, a[0].numpy(), cfg.fps, cfg.audio_rate) for f, a in zip(frames, audio)]
    assert s["peak_iou"] == pytest.approx(float(np.mean(each)))
    assert s["peak_iou"] > 0.3 and s["audio_peaks"] >= 1 and s["video_peaks"] >= 1   # real clips have events


def test_an_inference_export_asked_for_raw_weights_is_a_one_line_error(capsys):
    from benchmarks.sample_stats import main
    from mmdiff.checkpoint import default_checkpoint

    assert main(["--ckpt", str(default_checkpoint()), "--raw", "--num", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "only EMA weights" in err and "Traceback" not in err
