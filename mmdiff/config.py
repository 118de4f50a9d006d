"""Model and diffusion configuration: dataclasses, named presets, and (de)serialisation.

Every checkpoint stores `ModelConfig.to_dict()` so that it rebuilds its own network.

Tensor layouts used across the project (defined once here, referenced everywhere):
- video: (B, F, C, H, W) float32 in [-1, 1]  (frames, RGB channels, height, width)
- audio: (B, 1, T) float32 in [-1, 1]        (mono waveform, T = audio_samples)
- t:     (B,) int64 timesteps in [0, num_timesteps)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

SHIFT_MODES = ("random", "zero")
DILATION_SCHEDULES = ("mirrored", "public")   # audio dilation order (ModelConfig.audio_dilation_schedule)
SELF_ATTENTION_NORMS = ("layer", "group")     # per-token LayerNorm, or GroupNorm(32) over the sequence (public)
VIDEO_HEADS = ("2d+1d", "3d")                 # final video conv: factorised 2D+1D, or a 3x3x3 Conv3d (public)
CROSS_FUSIONS = ("rsmma", "easy")   # cross-modal layer: MM-Diffusion's RS-MMA, or CMMD's easy fusion
PREDICTIONS = ("eps", "v")          # what the network outputs: the noise (the paper's), or v (Salimans & Ho 2022)
TEXT_ENCODERS = {"all-MiniLM-L6-v2": 384}   # frozen caption encoders (mmdiff.text) -> embedding width
SR_ATTENTIONS = ("token", "adm")    # SR U-Net attention: LayerNorm per token, or ADM's GroupNorm over channels


class _ConfigIO:
    """Shared by the config dataclasses: tuple normalisation, `replace`, and dict round trips."""

    TUPLE_FIELDS: tuple[str, ...] = ()

    def _normalise(self) -> None:
        # Tuples may arrive as lists from JSON; normalise so equality and hashing work.
        for name in self.TUPLE_FIELDS:
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; was this saved by a newer mmdiff?")
        return cls(**d)


@dataclass(frozen=True)
class ModelConfig(_ConfigIO):
    """Hyper-parameters of the coupled audio-video U-Net (paper Table A.1)."""

    KIND = "joint"                  # checkpoint kind (class attributes, not fields)
    TUPLE_FIELDS = ("channel_mult", "attention_scales", "cross_windows", "modalities")

    # --- data layout -----------------------------------------------------------------
    video_frames: int = 16          # F
    video_size: int = 64            # H = W
    video_channels: int = 3
    fps: int = 10                   # frames per second of the video stream
    audio_samples: int = 25_600     # T
    audio_rate: int = 16_000        # Hz
    # --- U-Net -----------------------------------------------------------------------
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 2
    attention_scales: tuple[int, ...] = (2, 3, 4)   # 1-based U-Net scales with video attention + RS-MMA
    cross_windows: tuple[int, ...] = (1, 4, 8)      # RS-MMA window S per attention scale
    head_dim: int = 64
    time_embed_dim: int = 128        # step embedding width (sinusoid and its 2-layer MLP, Table A.1)
    audio_dilation_cycle: int = 11   # dilations 1, 2, ..., 2**(cycle-1), cycling block by block
    audio_downsample: int = 4        # audio stride per U-Net scale (video halves H and W)
    dropout: float = 0.1
    # --- RS-MMA ----------------------------------------------------------------------
    random_shift: bool = True        # draw a random shift R in training (paper Table 4 ablation: False)
    inference_shift: str = "random"  # "random": draw R at inference too (as trained); "zero": R = 0;
                                     # without random_shift R is 0 at inference whatever this says
    # --- single-modality ablations (paper "Ours-v" / "Ours-a") ----------------------------
    modalities: tuple[str, ...] = ("video", "audio")
    # --- cross-modal layer at the attention scales (fields added later keep defaults that
    # rebuild older checkpoints unchanged) -----------------------------------------------------
    cross_fusion: str = "rsmma"      # "rsmma" (MM-Diffusion) | "easy" (CMMD easy fusion; ignores windows/shift)
    # --- text conditioning (docs/text.md): a pooled caption embedding is projected and added to the
    # step embedding, so it reaches every block's scale-shift. 0 / "" = unconditional (older checkpoints).
    text_dim: int = 0                # width of the caption embedding (384 for all-MiniLM-L6-v2)
    text_encoder: str = ""           # the frozen encoder that makes it (a TEXT_ENCODERS key), "" without text
    text_scale: float = 1.0          # the caption embedding is multiplied by this before the MLP. The encoder's
                                     # embeddings have unit length (entries ~ 1/sqrt(text_dim)), so at 1.0 (older
                                     # text checkpoints) the MLP's first layer sees a signal ~20x below what its init
                                     # assumes; text_config sets sqrt(text_dim): entries of unit scale (docs/text.md)
    # --- switches for the released MM-Diffusion architecture (README "The model"); the defaults
    # rebuild checkpoints saved before they existed unchanged --------------------------------------------
    audio_dilation_schedule: str = "mirrored"  # "mirrored": 2**(k mod cycle) from k = 0, mirrored in the decoder;
                                     # "public": res block d counted from 1 gets 2**(d mod cycle), the middle
                                     # block the next d, the decoder counts back down (the public code's order)
    self_attention_heads: int = 0    # video/audio self-attention: 0 = channels // head_dim heads; N = N heads
                                     # at every width (public: 4). RS-MMA always uses head_dim-wide heads
    self_attention_norm: str = "layer"  # "layer": LayerNorm per token; "group": GroupNorm(32) over the sequence
    video_head: str = "2d+1d"        # final video conv: "2d+1d" (factorised) or "3d" (3x3x3 Conv3d, public)
    middle_cross: bool = True        # RS-MMA (window = all frames) in the middle block (the public code only
                                     # has it when cross_windows == (1, 4, 8))
    # --- what the network predicts (mmdiff.diffusion.joint.model_denoiser turns it into eps for the samplers):
    # "eps" (the paper's, older checkpoints) or "v" = sqrt(abar) eps - sqrt(1 - abar) x0, trained with the
    # v MSE, which weights the data prediction's error by 1 / (1 - abar) instead of abar / (1 - abar)
    prediction: str = "eps"

    def __post_init__(self) -> None:
        self._normalise()
        self.validate()

    # ----------------------------------------------------------------------------------
    def validate(self) -> None:
        n = len(self.channel_mult)
        if len(self.attention_scales) != len(self.cross_windows):
            raise ValueError(
                f"attention_scales {self.attention_scales} and cross_windows {self.cross_windows} "
                "must have the same length (one RS-MMA window per attention scale)")
        for s in self.attention_scales:
            if not 1 <= s <= n:
                raise ValueError(f"attention scale {s} is outside 1..{n} (channel_mult has {n} scales)")
        for w in self.cross_windows:
            if not 1 <= w <= self.video_frames:
                raise ValueError(f"RS-MMA window {w} must be in 1..video_frames={self.video_frames}")
        if self.video_size % (2 ** (n - 1)):
            raise ValueError(f"video_size {self.video_size} must be divisible by 2**{n - 1}")
        audio_div = self.audio_downsample ** (n - 1) * self.video_frames
        if self.audio_samples % audio_div:
            raise ValueError(
                f"audio_samples {self.audio_samples} must be divisible by "
                f"audio_downsample**{n - 1} * video_frames = {audio_div}, so that every scale splits "
                "the audio into one equal segment per frame")
        for s in self.attention_scales:
            width = self.base_channels * self.channel_mult[s - 1]
            if width % self.head_dim:
                raise ValueError(f"attention at scale {s} has {width} channels, not a multiple of "
                                 f"head_dim {self.head_dim}")
        deepest = self.base_channels * self.channel_mult[-1]
        for width in {self.base_channels * self.channel_mult[s - 1] for s in self.attention_scales} | {deepest}:
            if self.self_attention_heads < 0 or (self.self_attention_heads and width % self.self_attention_heads):
                raise ValueError(f"self_attention_heads {self.self_attention_heads} must be >= 0 and divide the "
                                 f"attention width {width}")
        for name, allowed in (("audio_dilation_schedule", DILATION_SCHEDULES),
                              ("self_attention_norm", SELF_ATTENTION_NORMS), ("video_head", VIDEO_HEADS),
                              ("prediction", PREDICTIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if deepest % self.head_dim:
            raise ValueError(f"the middle block has {deepest} channels, not a multiple of head_dim {self.head_dim}")
        if self.inference_shift not in SHIFT_MODES:
            raise ValueError(f"inference_shift must be one of {SHIFT_MODES}, got {self.inference_shift!r}")
        if self.cross_fusion not in CROSS_FUSIONS:
            raise ValueError(f"cross_fusion must be one of {CROSS_FUSIONS}, got {self.cross_fusion!r}")
        if self.text_dim or self.text_encoder:
            if self.text_encoder not in TEXT_ENCODERS:
                raise ValueError(f"text_encoder must be one of {sorted(TEXT_ENCODERS)} when text_dim > 0, "
                                 f"got {self.text_encoder!r} (text_dim={self.text_dim})")
            if self.text_dim != TEXT_ENCODERS[self.text_encoder]:
                raise ValueError(f"text_dim {self.text_dim} does not match {self.text_encoder}'s "
                                 f"{TEXT_ENCODERS[self.text_encoder]}-d embeddings")
        if not self.modalities or set(self.modalities) - {"video", "audio"}:
            raise ValueError(f"modalities must be a non-empty subset of ('video', 'audio'), got {self.modalities}")
        if abs(self.audio_samples / self.audio_rate - self.video_frames / self.fps) > 1e-6:
            raise ValueError(
                f"audio lasts {self.audio_samples / self.audio_rate:.4f} s but video lasts "
                f"{self.video_frames / self.fps:.4f} s; the two streams must cover the same time")

    @property
    def duration(self) -> float:
        """Clip length in seconds."""
        return self.video_frames / self.fps

    @property
    def video_shape(self) -> tuple[int, int, int, int]:
        """(F, C, H, W) of one video sample."""
        return (self.video_frames, self.video_channels, self.video_size, self.video_size)

    @property
    def audio_shape(self) -> tuple[int, int]:
        """(1, T) of one audio sample."""
        return (1, self.audio_samples)


@dataclass(frozen=True)
class DiffusionConfig:
    """The Gaussian diffusion process shared by both modalities (paper Sec. 3, Table A.1)."""

    num_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    schedule: str = "linear"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DiffusionConfig":
        return cls(**d)


# The released MM-Diffusion model (public code, ssh_scripts/multimodal_train.sh and multimodal_sample_sr.sh):
# paper Table A.1's 16x3x64x64 video at 10 fps and 1x25,600 audio at 16 kHz, base 128, mult 1,2,3,4, two res
# blocks per scale, attention + RS-MMA at scales 2,3,4 (ds 2,4,8) with windows 1,4,8, RS-MMA heads of 64
# channels, self-attention with 4 heads and GroupNorm, the public dilation order, a 3x3x3 Conv3d video head,
# dropout 0.1 in training. 133,675,524 parameters, the public model's exactly; `mmdiff.convert` loads its
# released weights. `paper` is this architecture.
MM_DIFFUSION = ModelConfig(audio_dilation_schedule="public", audio_dilation_cycle=10, self_attention_heads=4,
                           self_attention_norm="group", video_head="3d")
PAPER = MM_DIFFUSION

# CPU preset: 16 frames of 32x32 at 10 fps and 1.6 s of 8 kHz audio; 1.09M parameters, 3.9 GFLOP per
# forward. Sized so that a 20-step DPM-Solver++ clip samples well under 3 s on 2 cores and the shipped
# default model trains on the synthetic data on a CPU in about an hour (BENCHMARKS.md).
TINY = ModelConfig(
    video_size=32,
    audio_samples=12_800,
    audio_rate=8_000,
    base_channels=16,
    channel_mult=(1, 2, 4),
    num_res_blocks=1,
    attention_scales=(2, 3),
    cross_windows=(1, 4),
    head_dim=16,
    time_embed_dim=32,
    audio_dilation_cycle=8,
    dropout=0.0,
)

PRESETS: dict[str, ModelConfig] = {"paper": PAPER, "mm-diffusion": MM_DIFFUSION, "tiny": TINY}


@dataclass(frozen=True)
class SRConfig(_ConfigIO):
    """Hyper-parameters of the per-frame super-resolution U-Net (paper Sec. 4.1, Table A.1 right; ADM).

    The network denoises one high-resolution frame (3, high_size, high_size) given the bilinearly
    upsampled low-resolution frame, concatenated as 3 extra input channels.
    """

    low_size: int = 64
    high_size: int = 256
    channels: int = 3
    base_channels: int = 192
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_res_blocks: int = 2                          # per scale, plus one down/up-sampling res block
    attention_scales: tuple[int, ...] = (4, 5, 6)    # 1-based scales: 32x32, 16x16 and 8x8 at 256
    head_dim: int = 48
    time_embed_dim: int = 192                        # sinusoid width (Table A.1: 192)
    time_embed_mult: int = 4                         # MLP width = mult * time_embed_dim (ADM: 4)
    dropout: float = 0.1
    learn_sigma: bool = True                         # output eps and a variance interpolation (Improved DDPM)
    residual: bool = False                           # diffuse (frame - upsampled low) instead of the frame
    residual_scale: float = 1.0                      # residual mode: diffuse scale * residual (unit-ish variance)
    # --- the public (ADM / MM-Diffusion) layout; defaults rebuild older checkpoints unchanged ---------------
    resample_first: bool = False                     # up/down blocks: norm, SiLU, resample, conv (ADM) instead of
                                                     # norm, SiLU, conv, resample
    attention: str = "token"                         # "token": per-token LayerNorm; "adm": GroupNorm(32) over channels
    num_heads: int = 0                               # fixed heads at every width (ADM num_heads); 0: width // head_dim

    KIND = "sr"
    TUPLE_FIELDS = ("channel_mult", "attention_scales")

    def __post_init__(self) -> None:
        self._normalise()
        self.validate()

    def validate(self) -> None:
        n = len(self.channel_mult)
        if not self.residual_scale > 0:
            raise ValueError(f"residual_scale must be > 0, got {self.residual_scale}")
        if self.high_size % self.low_size:
            raise ValueError(f"high_size {self.high_size} must be a whole multiple of low_size {self.low_size}")
        if self.high_size % (2 ** (n - 1)):
            raise ValueError(f"high_size {self.high_size} must be divisible by 2**{n - 1}")
        if self.attention not in SR_ATTENTIONS:
            raise ValueError(f"attention must be one of {SR_ATTENTIONS}, got {self.attention!r}")
        if self.num_heads < 0:
            raise ValueError(f"num_heads must be >= 0 (0: width // head_dim), got {self.num_heads}")
        divisor, what = (self.num_heads, "num_heads") if self.num_heads else (self.head_dim, "head_dim")
        for s in self.attention_scales:
            if not 1 <= s <= n:
                raise ValueError(f"attention scale {s} is outside 1..{n} (channel_mult has {n} scales)")
            if (self.base_channels * self.channel_mult[s - 1]) % divisor:
                raise ValueError(f"attention at scale {s} has a width that is not a multiple of {what} {divisor}")
        if (self.base_channels * self.channel_mult[-1]) % divisor:
            raise ValueError(f"the middle block width is not a multiple of {what} {divisor}")

    @property
    def scale_factor(self) -> int:
        return self.high_size // self.low_size

    @property
    def out_channels(self) -> int:
        return self.channels * (2 if self.learn_sigma else 1)

    def heads(self, width: int) -> int:
        """Attention heads at a width: `num_heads` if set, else width // head_dim."""
        return self.num_heads or width // self.head_dim


# Paper Table A.1 (right) / ADM's 64 -> 256 upsampler: about 311M parameters.
SR_PAPER = SRConfig()

# CPU preset for the tiny joint model: 32x32 -> 128x128 (the same 4x factor). It diffuses the residual over
# bilinear upsampling (a deviation from ADM/the paper, which diffuse the frame): the frame-space model needs
# far more steps than a CPU affords before it uses its condition at high noise levels (docs/sr.md). The residual
# is scaled by 8: on the synthetic data its std is 0.043, so unscaled the model's leftover noise swamps it.
SR_TINY = SRConfig(
    residual=True,
    residual_scale=8.0,
    low_size=32,
    high_size=128,
    base_channels=32,
    channel_mult=(1, 1, 2, 2),
    num_res_blocks=1,
    attention_scales=(4,),
    head_dim=32,
    time_embed_dim=32,
    dropout=0.0,
)

# The released MM-Diffusion upsampler (AIST++_SR.pt, Landscape_SR.pt; guided-diffusion's 64 -> 256 U-Net), as
# ssh_scripts/multimodal_sample_sr.sh builds it: 311,027,910 parameters. It differs from `paper` in the up/down
# blocks' order (resample before the conv), the attention (4 heads at every width, GroupNorm) and dropout 0.
# mmdiff.convert_sr turns the public state dicts into checkpoints of this preset.
SR_MM_DIFFUSION = SRConfig(resample_first=True, attention="adm", num_heads=4, dropout=0.0)

SR_PRESETS: dict[str, SRConfig] = {"paper": SR_PAPER, "tiny": SR_TINY, "mm-diffusion-sr": SR_MM_DIFFUSION}


# --- ablations (MM-Diffusion Sec. 4.4-4.5; CMMD) ---------------------------------------------------
# Table 3: RS-MMA window size per attention scale [2, 3, 4]; the paper's default is [1, 4, 8].
TABLE3_WINDOWS: dict[str, tuple[int, ...]] = {"w111": (1, 1, 1), "w444": (4, 4, 4), "w888": (8, 8, 8),
                                              "w148": (1, 4, 8)}


def ablation_config(base: ModelConfig, windows: tuple[int, ...] | None = None,
                    random_shift: bool | None = None, modalities: tuple[str, ...] | None = None,
                    cross_fusion: str | None = None, prediction: str | None = None) -> ModelConfig:
    """`base` with the given ablation settings changed (None keeps the base's value), validated.

    :param windows: RS-MMA window S per attention scale (Table 3), one per `base.attention_scales`.
    :param random_shift: False trains RS-MMA without the random shift (Table 4).
    :param modalities: ("video",) or ("audio",) for the single-stream sub-networks "Ours-v" / "Ours-a".
    :param cross_fusion: "rsmma" or CMMD's "easy" fusion.
    :param prediction: "eps" or "v" (what the network predicts, ModelConfig.prediction).
    """
    changes: dict[str, Any] = {}
    if windows is not None:
        windows = tuple(int(w) for w in windows)
        if len(windows) != len(base.attention_scales):
            raise ValueError(f"{len(windows)} cross windows {windows} given, but the config has "
                             f"{len(base.attention_scales)} attention scales {base.attention_scales}")
        changes["cross_windows"] = windows
    if random_shift is not None:
        changes["random_shift"] = bool(random_shift)
    if modalities is not None:
        changes["modalities"] = tuple(modalities)
    if cross_fusion is not None:
        changes["cross_fusion"] = cross_fusion
    if prediction is not None:
        changes["prediction"] = prediction
    return base.replace(**changes) if changes else base


def text_config(base: ModelConfig, encoder: str = "all-MiniLM-L6-v2") -> ModelConfig:
    """`base` conditioned on captions embedded by the frozen `encoder` (mmdiff.train --text-cond)."""
    if encoder not in TEXT_ENCODERS:
        raise ValueError(f"unknown text encoder {encoder!r}; choose one of {sorted(TEXT_ENCODERS)}")
    dim = TEXT_ENCODERS[encoder]
    return base.replace(text_dim=dim, text_encoder=encoder, text_scale=float(dim) ** 0.5)


# Named ablation configs of the paper model: "paper-w111" ... (Table 3), "paper-no-rs" (Table 4),
# "paper-v" / "paper-a" (Tables 1-2 "Ours-v" / "Ours-a"), "paper-easy" (CMMD easy fusion).
ABLATION_PRESETS: dict[str, ModelConfig] = {
    **{f"paper-{name}": ablation_config(PAPER, windows=w) for name, w in TABLE3_WINDOWS.items()},
    "paper-no-rs": ablation_config(PAPER, random_shift=False),
    "paper-v": ablation_config(PAPER, modalities=("video",)),
    "paper-a": ablation_config(PAPER, modalities=("audio",)),
    "paper-easy": ablation_config(PAPER, cross_fusion="easy"),
}


def _resolve(value, cls, named: dict, what: str):
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        return cls.from_dict(value)
    if isinstance(value, str):
        try:
            return named[value]
        except KeyError:
            raise ValueError(f"unknown {what} {value!r}; choose one of {sorted(named)}") from None
    raise TypeError(f"expected a preset name, dict or {cls.__name__}, got {type(value).__name__}")


def resolve_config(preset_or_config: "str | ModelConfig | dict[str, Any]") -> ModelConfig:
    """Turn a preset name (a PRESETS or ABLATION_PRESETS key), a config dict (from a checkpoint) or a
    ModelConfig into a ModelConfig."""
    return _resolve(preset_or_config, ModelConfig, {**PRESETS, **ABLATION_PRESETS}, "preset")


def resolve_sr_config(preset_or_config: "str | SRConfig | dict[str, Any]") -> SRConfig:
    """Like `resolve_config`, for the super-resolution U-Net."""
    return _resolve(preset_or_config, SRConfig, SR_PRESETS, "SR preset")


__all__ = ["ModelConfig", "DiffusionConfig", "PRESETS", "PAPER", "MM_DIFFUSION", "TINY", "resolve_config", "SHIFT_MODES",
           "CROSS_FUSIONS", "TABLE3_WINDOWS", "TEXT_ENCODERS", "text_config", "ABLATION_PRESETS", "ablation_config",
           "SRConfig", "SR_PRESETS", "SR_PAPER", "SR_TINY", "resolve_sr_config",
           "SR_MM_DIFFUSION", "SR_ATTENTIONS"]
