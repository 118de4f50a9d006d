"""Generation jobs for interactive front ends: a model store, cancellable sampling, clips written to files.

No UI imports: the studio wraps these functions; tests and notebooks call them directly.

    store = ModelStore(device="cpu")
    model, schedule = store.get(None)                 # the shipped default model (clear error if missing)
    clips = generate_clips_to(out_dir, model, schedule, JobSpec(num=2, seed=0), on_step=...)
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mmdiff.checkpoint import DEFAULT_CHECKPOINT, DEFAULT_SR_CHECKPOINT, CheckpointError, load_model, load_sr_model
from mmdiff.data.pixels import model_to_frames
from mmdiff.diffusion.guidance import Condition
from mmdiff.diffusion.joint import JointLayout
from mmdiff.generate import SamplerOptions, encode_prompt, generate, generate_two_step
from mmdiff.modelcard import ModelCard, read_card


class JobCancelled(RuntimeError):
    """Raised from the sampler callback when the job's cancel event is set."""


class ModelStore:
    """Loaded models by checkpoint path (None = the shipped default), one lock per model.

    The lock serialises sampling on one model, so a seed always gives the same clip even when
    several users generate at once on one model (shifts and noise come from generators owned by each call).
    """

    def __init__(self, device: str | torch.device = "cpu", default_ckpt: str | Path | None = None):
        self.device = torch.device(device)
        self.default_ckpt = Path(default_ckpt) if default_ckpt else DEFAULT_CHECKPOINT
        self._models: dict[str, tuple[tuple[int, int], object]] = {}   # key -> (file version, loaded model)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._text_encoder = None
        self._cards: dict[tuple[str, int], ModelCard] = {}

    def resolve(self, ckpt: str | Path | None) -> Path:
        path = Path(ckpt) if ckpt else self.default_ckpt
        if not path.is_file():
            if ckpt is None or Path(ckpt) == self.default_ckpt:
                raise CheckpointError(
                    f"the default model {path.name} is missing (expected at {path}). Train it with "
                    "`python -m mmdiff.train --preset tiny ...` (see README) and copy last.pt there, or "
                    "choose/upload another checkpoint.")
            raise CheckpointError(f"checkpoint {path.name} does not exist")
        return path.resolve()

    def _loaded(self, key: str, path: Path, load):
        """The model of `path` (by `load(path, device)`), loaded once per file version: a checkpoint rewritten on
        disk (a training run's last.pt) is loaded again, replacing the old version. Call under self._guard."""
        st = path.stat()
        version = (st.st_mtime_ns, st.st_size)
        entry = self._models.get(key)
        if entry is None or entry[0] != version:
            self._models[key] = (version, load(path, self.device))
            self._locks.setdefault(key, threading.Lock())    # one lock per file, across its versions
        return self._models[key][1]

    def get(self, ckpt: str | Path | None = None):
        """(model, schedule) for a checkpoint; loaded once per version of the file, then kept."""
        path = self.resolve(ckpt)
        with self._guard:
            return self._loaded(str(path), path, load_model)

    def card(self, ckpt: str | Path | None = None) -> ModelCard:
        """What a checkpoint knows (mmdiff.modelcard), read without loading its weights; kept per file version."""
        path = self.resolve(ckpt)
        key = (str(path), path.stat().st_mtime_ns)
        with self._guard:
            if key not in self._cards:
                card = read_card(path)
                self._cards[key] = replace(card, shipped=card.shipped or path == self.default_ckpt.resolve())
            return self._cards[key]

    def get_sr(self, ckpt: str | Path | None = None):
        """(SR model, schedule) for a super-resolution checkpoint (None: the shipped one); loaded once."""
        path = Path(ckpt) if ckpt else DEFAULT_SR_CHECKPOINT
        if not path.is_file():
            raise CheckpointError(
                f"no super-resolution model: {path.name} is missing (expected at {path}; none is shipped, see "
                "docs/sr.md). Train one with `python -m mmdiff.train_sr --preset tiny ...` (README, "
                "'Super-resolution') and start the app with --sr-ckpt RUN/last.pt")
        key = f"sr:{path.resolve()}"
        with self._guard:
            return self._loaded(key, path.resolve(), load_sr_model), self._locks[key]

    def text_encoder(self):
        """The frozen caption encoder (mmdiff.text.encoder.TextEncoder), loaded on first use, then kept.

        TextEncoderMissing (a FileNotFoundError naming the install command) when its weights are not installed.
        """
        from mmdiff.text.encoder import TextEncoder

        with self._guard:
            if self._text_encoder is None:
                self._text_encoder = TextEncoder(device=self.device)
            return self._text_encoder

    def lock(self, ckpt: str | Path | None = None) -> threading.Lock:
        key = str(self.resolve(ckpt))
        self.get(ckpt)
        return self._locks[key]


@dataclass(frozen=True)
class JobSpec:
    num: int = 1
    seed: int = 0
    sampler: str = "dpm-solver++"
    steps: int = 20
    eta: float = 0.0
    order: int = 3
    max_num: int = 8
    prompt: str = ""                # caption for a text-conditioned model; "" = unconditional
    guidance_scale: float = 3.0     # classifier-free guidance scale with a prompt (0 uncond, 1 cond)
    audio_guidance_scale: float | None = None   # the audio stream's own scale; None: guidance_scale
    two_step: bool = False          # text -> video, then audio for that video (mmdiff.generate.generate_two_step)

    def options(self) -> SamplerOptions:
        if not 1 <= self.num <= self.max_num:
            raise ValueError(f"batch size must be between 1 and {self.max_num}, got {self.num}")
        for name, scale in (("guidance scale", self.guidance_scale), ("audio guidance scale",
                                                                        self.audio_guidance_scale)):
            if scale is not None and not 0 <= scale <= 50:
                raise ValueError(f"{name} must be between 0 and 50, got {scale}")
        return SamplerOptions(self.sampler, steps=self.steps, eta=float(self.eta), order=self.order)


@dataclass(frozen=True)
class ClipFiles:
    mp4: Path
    wav: Path | None
    png: Path                 # spectrogram + onset + frame-strip view
    view: Path | None = None  # the mp4 to show: blown up (nearest neighbour) for small frames, else mp4 itself

    @property
    def downloads(self) -> list[Path]:
        """The clip's files at their native size (mp4, wav, png), not the display copy."""
        return [p for p in (self.mp4, self.wav, self.png) if p is not None]


StepFn = Callable[[int, int, np.ndarray | None], None]   # (step, steps, preview uint8 (N, F, H, W, 3) or None)


def progress_callback(on_step: StepFn | None, cancel: threading.Event | None,
                      preview: Callable[[torch.Tensor], np.ndarray] | None = None, preview_every: int = 4):
    """Sampler callback: raises JobCancelled when `cancel` is set; reports progress and, every
    `preview_every` steps, `preview(x0 estimate)`."""

    def callback(info: dict) -> None:
        if cancel is not None and cancel.is_set():
            raise JobCancelled("cancelled")
        if on_step is None:
            return
        step, steps = int(info["step"]), int(info["steps"])          # step is 1-based
        show = preview is not None and (step % preview_every == 0 or step == steps or step == 1)
        on_step(step, steps, preview(info["x0"]) if show else None)

    return callback


def step_callback(model, on_step: StepFn | None, cancel: threading.Event | None, preview_every: int = 4):
    """The joint model's sampler callback: progress, cancel, and previews of the video's x0 estimate."""
    layout = JointLayout.from_config(model.config)
    preview = (lambda x0: model_to_frames(layout.unpack(x0)[0])) if "video" in layout.slices else None
    return progress_callback(on_step, cancel, preview, preview_every)


def prompt_text(store: ModelStore, model, prompt: str) -> torch.Tensor | None:
    """(1, text_dim) embedding of `prompt`, None for an empty one; ValueError for a model without text."""
    return encode_prompt(prompt, model, store.text_encoder)


def run_generation(store: ModelStore, ckpt, spec: JobSpec, condition: Condition | None = None,
                   on_step: StepFn | None = None, cancel: threading.Event | None = None):
    """Sample under the model's lock. Returns (model config, video (N, F, 3, H, W) | None, audio (N, 1, T) | None).

    With `spec.prompt` the caption guides a text model (classifier-free, `spec.guidance_scale`, the audio
    stream at `spec.audio_guidance_scale` when given); with
    `spec.two_step` the video is generated first and its audio second (mmdiff.generate.generate_two_step).
    """
    model, schedule = store.get(ckpt)
    opts = spec.options()
    if spec.two_step and condition is not None:
        raise ValueError("the two-step pipeline makes its own video condition; do not pass another condition")
    text = prompt_text(store, model, spec.prompt)
    common = dict(seed=int(spec.seed), schedule=schedule, callback=step_callback(model, on_step, cancel), text=text,
                  guidance_scale=float(spec.guidance_scale), audio_guidance_scale=spec.audio_guidance_scale)
    with store.lock(ckpt):
        if cancel is not None and cancel.is_set():
            raise JobCancelled("cancelled")
        with torch.inference_mode(condition is None or condition.mode != "gradient"):
            if spec.two_step:
                video, audio = generate_two_step(model, spec.num, opts, **common)
            else:
                video, audio = generate(model, spec.num, opts, condition=condition, **common)
    return model.config, video, audio


def run_upscale(store: ModelStore, sr_ckpt, video: torch.Tensor, seed: int = 0, steps: int = 25,
                on_step: StepFn | None = None, cancel: threading.Event | None = None) -> torch.Tensor:
    """Super-resolve (N, F, 3, h, w) clips frame by frame (DDIM, shared initial noise) under the SR model's lock."""
    from mmdiff.upscale import upscale

    (model, schedule), lock = store.get_sr(sr_ckpt)
    if video.shape[-1] != model.config.low_size:
        raise ValueError(f"the super-resolution model upscales {model.config.low_size}x{model.config.low_size} "
                         f"frames; this model makes {video.shape[-1]}x{video.shape[-1]}")
    with lock, torch.inference_mode():
        return upscale(model, video, SamplerOptions("ddim", steps=steps), seed=seed, schedule=schedule,
                       callback=progress_callback(on_step, cancel))


def write_view(path: str | Path, frames: np.ndarray, sound: np.ndarray, fps: float, rate: int,
               view_px: int | None) -> Path | None:
    """A display copy of a clip whose frames are smaller than `view_px`: every pixel an integer-sized block
    (mmdiff.data.pixels.nearest_upscale), so a player shows sharp pixels instead of smoothing a 32-px clip into
    a blur. None when no copy is needed (no view_px, or frames at least that large)."""
    from mmdiff.data.av_io import write_clip
    from mmdiff.data.pixels import nearest_upscale, view_factor

    factor = view_factor(frames.shape[-2], view_px) if view_px else 1
    if factor == 1:
        return None
    return write_clip(path, nearest_upscale(frames, factor), sound, fps, rate)


def write_clips(out_dir: str | Path, cfg, video: torch.Tensor | None, audio: torch.Tensor | None,
                prefix: str = "clip", titles: list[str] | None = None, view_px: int | None = None) -> list[ClipFiles]:
    """Write each clip as mp4 (H.264 + AAC), wav and a spectrogram PNG into out_dir; with `view_px`, also a
    display copy of small clips (write_view) as {prefix}_{k}_view.mp4."""
    from mmdiff.data.av_io import AVClip, write_clip, write_wav
    from mmdiff.viz import clip_figure, save_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = (video if video is not None else audio).shape[0]
    v8 = model_to_frames(video) if video is not None else None
    files = []
    for k in range(n):
        a = audio[k, 0].float().cpu().numpy() if audio is not None else None
        frames = v8[k] if v8 is not None else np.zeros((cfg.video_frames, cfg.video_size, cfg.video_size, 3), np.uint8)
        sound = a if a is not None else np.zeros(cfg.audio_samples, np.float32)
        mp4 = write_clip(out / f"{prefix}_{k}.mp4", frames, sound, cfg.fps, cfg.audio_rate)
        view = write_view(out / f"{prefix}_{k}_view.mp4", frames, sound, cfg.fps, cfg.audio_rate, view_px)
        wav = write_wav(out / f"{prefix}_{k}.wav", a, cfg.audio_rate) if a is not None else None
        title = titles[k] if titles else f"{prefix} {k}"
        fig = clip_figure(AVClip(v8[k] if v8 is not None else None, a, cfg.fps, cfg.audio_rate, title))
        png = save_png(fig, out / f"{prefix}_{k}.png")
        files.append(ClipFiles(mp4, wav, png, view or mp4))
    return files


def zip_clips(path: str | Path, clips: list[ClipFiles]) -> Path:
    """All the clips' downloads (mp4, wav, png at native size) in one zip, written atomically; names as on disk."""
    from mmdiff.atomic import write_zip

    return write_zip(path, [(p, p.name) for c in clips for p in c.downloads])


def find_checkpoints(folders: list[str | Path], limit: int = 200, max_depth: int = 4) -> list[Path]:
    """*.pt files under the given folders (hidden folders, virtual envs and site-packages skipped), newest first."""
    import os

    skip = {"node_modules", "site-packages", "__pycache__", ".venv", "venv"}
    found: set[Path] = set()
    for folder in folders:
        f = Path(folder)
        if f.is_file() and f.suffix == ".pt":
            found.add(f.resolve())
            continue
        if not f.is_dir():
            continue
        base = len(f.resolve().parts)
        for root, dirs, files in os.walk(f.resolve()):
            depth = len(Path(root).parts) - base
            dirs[:] = [] if depth >= max_depth else [d for d in dirs if not d.startswith(".") and d not in skip]
            for name in files:
                if name.endswith(".pt") and not name.startswith("."):
                    found.add(Path(root, name))
            if len(found) >= limit:
                break
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)[:limit]
