"""The joint (video, audio) diffusion state.

Samplers, the loss and zero-shot guidance all work on one flat state x of shape (B, D), with
D = F*C*H*W + T: the video block first, then the audio block. `JointLayout` packs and unpacks it, and
`model_denoiser` adapts the coupled U-Net to the (x, t) -> eps contract every sampler uses. So there is
exactly one diffusion process and one sampler per algorithm for both modalities.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from mmdiff.config import ModelConfig

# (x (B, D), t (B,) shared or (B, M) one level per modality in layout order) -> eps (B, D)
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MODALITIES = ("video", "audio")


class JointLayout:
    """Where each modality lives in the flat state."""

    def __init__(self, video_shape: tuple[int, ...] | None, audio_shape: tuple[int, ...] | None):
        self.shapes = {"video": tuple(video_shape) if video_shape else None,
                       "audio": tuple(audio_shape) if audio_shape else None}
        if not any(self.shapes.values()):
            raise ValueError("a joint layout needs at least one modality")
        self.slices: dict[str, slice] = {}
        start = 0
        for m in MODALITIES:
            if self.shapes[m]:
                n = math.prod(self.shapes[m])
                self.slices[m] = slice(start, start + n)
                start += n
        self.size = start

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "JointLayout":
        return cls(cfg.video_shape if "video" in cfg.modalities else None,
                   cfg.audio_shape if "audio" in cfg.modalities else None)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.slices)

    def pack(self, video: torch.Tensor | None, audio: torch.Tensor | None) -> torch.Tensor:
        """(B, F, C, H, W), (B, 1, T) -> (B, D)."""
        parts = []
        for m, x in zip(MODALITIES, (video, audio)):
            if m not in self.slices:
                continue
            if x is None or tuple(x.shape[1:]) != self.shapes[m]:
                raise ValueError(f"{m} must have shape (B, {', '.join(map(str, self.shapes[m]))}), "
                                 f"got {None if x is None else tuple(x.shape)}")
            parts.append(x.reshape(x.shape[0], -1))
        return torch.cat(parts, dim=1)

    def unpack(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(B, D) -> (video (B, F, C, H, W) or None, audio (B, 1, T) or None); views, no copies."""
        if x.ndim != 2 or x.shape[1] != self.size:
            raise ValueError(f"joint state must have shape (B, {self.size}), got {tuple(x.shape)}")
        out = []
        for m in MODALITIES:
            out.append(x[:, self.slices[m]].view(x.shape[0], *self.shapes[m]) if m in self.slices else None)
        return out[0], out[1]

    def mask(self, modality: str, device=None) -> torch.Tensor:
        """(D,) bool mask of one modality's coordinates."""
        m = torch.zeros(self.size, dtype=torch.bool, device=device)
        m[self.slices[modality]] = True
        return m


def match_batch(cond: torch.Tensor, n: int) -> torch.Tensor:
    """Per-sample conditioning (K, ...) for a batch of n states: K = n as is, K = 1 expanded, and K dividing n
    tiled (the contrastive loss stacks [matched; mismatched] copies of a batch, each clip keeping its caption)."""
    k = cond.shape[0]
    if k == n:
        return cond
    if k == 1:
        return cond.expand(n, *cond.shape[1:])
    if k and n % k == 0:
        return cond.repeat(n // k, *([1] * (cond.ndim - 1)))
    raise ValueError(f"{k} conditioning rows do not fit a batch of {n} states")


def model_denoiser(model: torch.nn.Module, layout: JointLayout, text: torch.Tensor | None = None,
                   shift=None, schedule=None, prediction: str | None = None) -> Denoiser:
    """Adapt `model(video, audio, t[, text]) -> (out_v, out_a)` to the flat (x, t) -> eps contract.

    :param text: (1 or B, text_dim) caption embeddings bound to every call (a text-conditioned model);
        None calls the model without text (the null caption for a text model).
    :param shift: RS-MMA's shift for every call (an int R, or a CPU torch.Generator owned by the caller
        to draw R from, see CoupledUNet.forward); None leaves the model's default.
    :param schedule: the diffusion schedule; needed when the model predicts v (its output becomes eps).
    :param prediction: what the model outputs, "eps" or "v"; None: `model.config.prediction` (pass it for a
        wrapped model, e.g. DistributedDataParallel).
    """
    extra = {} if shift is None else {"shift": shift}
    prediction = prediction or getattr(getattr(model, "config", None), "prediction", "eps")
    if prediction == "v" and schedule is None:
        raise ValueError("a model that predicts v needs the diffusion schedule to give eps")

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        video, audio = layout.unpack(x)
        if text is None:
            out_v, out_a = model(video, audio, t, **extra)
        else:
            out_v, out_a = model(video, audio, t, text=match_batch(text, x.shape[0]).to(x.device), **extra)
        out = layout.pack(out_v, out_a).to(x.dtype)
        return v_to_eps(out, x, t, layout, schedule) if prediction == "v" else out

    return denoise


def v_to_eps(v: torch.Tensor, x: torch.Tensor, t: torch.Tensor, layout: JointLayout, schedule) -> torch.Tensor:
    """eps (B, D) of a v prediction (B, D) at state x_t (B, D): eps = sqrt(1 - abar) x_t + sqrt(abar) v, each
    modality at its own level (t (B,) shared or (B, M) in layout order). Exact for the true v =
    sqrt(abar) eps - sqrt(1 - abar) x0, since x_t = sqrt(abar) x0 + sqrt(1 - abar) eps."""
    eps = torch.empty_like(v)
    for k, s in enumerate(layout.slices.values()):
        ab = schedule.alpha_bar(t if t.ndim == 1 else t[:, k]).to(device=x.device, dtype=x.dtype)[:, None]  # (B, 1)
        eps[:, s] = (1 - ab).sqrt() * x[:, s] + ab.sqrt() * v[:, s]
    return eps


def zero_mean_audio(denoise: Denoiser, layout: JointLayout, schedule) -> Denoiser:
    """Wrap `denoise` so that the audio part of every x0 estimate has zero mean (a waveform carries no DC);
    the returned eps is the one consistent with that x0. Video coordinates are untouched.

    Why: the eps loss weights the audio's DC as one coordinate in T, so a model learns it last; at high
    noise a small DC error in eps becomes a large DC in x0 (scaled by sqrt((1 - abar) / abar), about 150
    at t = T - 1) and every later step keeps it as signal. Undertrained models then generate events on a
    constant offset of up to +-0.9 (seen on the shipped tiny model). Like clamping x0 to [-1, 1], this is
    a projection onto a property every training clip has.
    """
    if "audio" not in layout.slices:
        return denoise
    sl, col = layout.slices["audio"], layout.modalities.index("audio")

    def denoise_zero_mean(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = denoise(x, t)
        ta = t if t.ndim == 1 else t[:, col]                                             # (B,) audio level
        ab = schedule.alpha_bar(ta).to(x)[:, None]                                      # (B, 1)
        x0_mean = schedule.predict_x0(x[:, sl], ta, eps[:, sl]).mean(1, keepdim=True)   # (B, 1)
        # x0' = x0 - mean  <=>  eps' = eps + sqrt(abar / (1 - abar)) * mean, on the audio block only
        return eps + layout.mask("audio", x.device).to(x.dtype) * ((ab / (1 - ab)).sqrt() * x0_mean)

    return denoise_zero_mean
