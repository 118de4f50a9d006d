"""Shared helpers for the studio tests: a tiny checkpoint, media files (good and bad), an app on a free port."""
from __future__ import annotations

import os
import socket
import wave
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

for _k, _v in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    os.environ.setdefault(_k, _v)

V2A = "video → audio: upload a video, generate its sound"
A2V = "audio → video: upload a sound, generate its video"


def tiny_checkpoint(path: Path, seed: int = 0, text: bool = False) -> Path:
    """The tiny preset with random (perturbed) weights: for tests only, never shipped. `text`: conditioned on
    captions (ModelConfig.text_dim = 384, as `mmdiff.train --text-cond` makes)."""
    import torch

    import mmdiff
    from mmdiff.checkpoint import save_checkpoint
    from mmdiff.config import PRESETS, DiffusionConfig, text_config

    cfg = text_config(PRESETS["tiny"]) if text else PRESETS["tiny"]
    torch.manual_seed(seed)
    model = mmdiff.build_model(cfg)
    with torch.no_grad():                      # zero-init output convs would make every sample identical
        for p in model.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.02)
    return save_checkpoint(path, model_config=cfg, diffusion_config=DiffusionConfig(),
                           model=None, ema=model.state_dict())


def sr_checkpoint(path: Path, seed: int = 0) -> Path:
    """The tiny SR preset (32 -> 128) with random (perturbed) weights: for tests only."""
    import torch

    from mmdiff.checkpoint import save_checkpoint
    from mmdiff.config import SR_TINY, DiffusionConfig
    from mmdiff.nn.sr_unet import SRUNet

    torch.manual_seed(seed)
    model = SRUNet(SR_TINY)
    with torch.no_grad():
        for p in model.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.02)
    return save_checkpoint(path, model_config=SR_TINY, diffusion_config=DiffusionConfig(), model=None,
                           ema=model.state_dict())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frames_ramp(n: int, h: int, w: int) -> np.ndarray:
    """(n, h, w, 3) uint8; frame k is a flat grey of level 10 * k (frame identity readable after coding)."""
    return np.stack([np.full((h, w, 3), min(255, 10 * k), np.uint8) for k in range(n)])


def write_video(path: Path, frames: np.ndarray, fps: float, audio: np.ndarray | None = None, rate: int = 8000) -> Path:
    """mp4 with H.264 video and (optionally) AAC audio; no audio -> a silent video with no audio stream."""
    with av.open(str(path), "w", format="mp4") as c:
        vs = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        vs.options = {"crf": "10"}
        as_ = None
        if audio is not None:
            as_ = c.add_stream("aac", rate=rate)
            as_.layout = "mono"
        for f in frames:
            c.mux(vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        c.mux(vs.encode(None))
        if as_ is not None:
            a = audio.astype(np.float32)
            for s in range(0, a.size, 1024):
                fr = av.AudioFrame.from_ndarray(a[None, s:s + 1024], format="flt", layout="mono")
                fr.sample_rate, fr.pts = rate, s
                c.mux(as_.encode(fr))
            c.mux(as_.encode(None))
    return path


def write_pcm_wav(path: Path, audio: np.ndarray, rate: int) -> Path:
    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def sine(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_media(root: Path) -> dict[str, Path]:
    """Good and bad uploads, by name."""
    root.mkdir(parents=True, exist_ok=True)
    m = {}
    m["av"] = write_video(root / "av.mp4", frames_ramp(25, 48, 64), 12.5, sine(2.0, 8000), 8000)
    m["silent_video"] = write_video(root / "silent.mp4", frames_ramp(20, 36, 36), 10)
    m["odd_size_video"] = write_video(root / "odd.mp4", frames_ramp(24, 30, 46), 12)
    m["wav_11k"] = write_pcm_wav(root / "tone11k.wav", sine(2.0, 11025, 300.0), 11025)
    m["short_wav"] = write_pcm_wav(root / "short.wav", sine(0.5, 8000), 8000)
    m["click_wav"] = write_pcm_wav(root / "click.wav", sine(0.05, 8000), 8000)      # under one video frame
    m["short_video"] = write_video(root / "short.mp4", frames_ramp(5, 32, 32), 10)
    m["low_rate_wav"] = write_pcm_wav(root / "lowrate.wav", sine(2.0, 2000, 200.0), 2000)
    m["long_video"] = write_video(root / "long.mp4", frames_ramp(70, 16, 16), 10)      # 7 s
    (root / "empty.mp4").write_bytes(b"")
    m["empty"] = root / "empty.mp4"
    (root / "notes.mp4").write_text("this is not a video\n" * 20)
    m["not_media"] = root / "notes.mp4"
    big = root / "huge.mp4"
    with open(big, "wb") as f:
        f.write(np.random.default_rng(0).integers(0, 256, 3 * 2**20, dtype=np.uint8).tobytes())
    m["huge"] = big
    return m


@contextmanager
def running_app(ckpt: Path, workspace: list[Path], max_bytes: int = 2 * 2**20, max_seconds: float = 5.0, **kw):
    """Build and serve the studio in this process on a free port; yields (demo, url); closes on exit."""
    from mmdiff.uploads import UploadLimits
    from studio import build_app
    from studio.app import launch_kwargs

    demo = build_app(ckpt=str(ckpt), device="cpu", workspace=[str(w) for w in workspace],
                     limits=UploadLimits(max_bytes=max_bytes, max_seconds=max_seconds), **kw)
    port = free_port()
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(demo, "127.0.0.1", port))
    try:
        yield demo, f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        demo.studio.close()
