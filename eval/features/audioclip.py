"""AudioCLIP's audio branch (ESResNeXt-fbsp; Guzhov et al., ICASSP 2022), for FAD as MM-Diffusion reports it.

Written here from the published architecture, with the key layout of the released
`AudioCLIP-Full-Training.pt` (audio keys prefixed `audio.`; the image/text keys are ignored):
- a trainable "frequency B-spline" (fbsp) Fourier layer: frames of 1654 samples, hop 561,
  Blackman-Harris window, zero-padded to n_fft = 2048, 1025 complex bins, power in dB;
- the 1025 bins split into 3 bands of 341 rows, fed as 3 channels to a ResNeXt-50 (32x4d) with
  the ESResNet attention blocks; its 2048-d pooled output goes through `fc` to 1024 dims.

Input handling: float waveforms (N, samples) at any rate are resampled to 44.1 kHz (polyphase)
and cut or zero-padded at the end to 1.6 s = 70,560 samples, one 1024-d un-normalised embedding
per clip (as MM-Diffusion's evaluation). The network was trained on int16-range audio; like
MM-Diffusion's public evaluation we feed [-1, 1] floats as they are by default
(`input_range="float"`), which keeps FAD comparable with the paper; `input_range="int16"`
multiplies by 32768 first, as AudioCLIP itself was trained. The choice is recorded in results.

Bit-exact: on the same weights and input, the float32 (and float64) embeddings equal those of the
original code (AudioCLIP @ 45327aa, `encode_audio`) bit for bit; the operation order of the input map
and the fbsp layer matters in float32 (tests/data/audioclip, tests/test_eval_audioclip_reference.py).

BatchNorm: eval mode (running statistics) by default. `batchnorm="train"` is an evaluator-compat
option: MM-Diffusion's FAD code never calls .eval(), so its BatchNorms normalise each batch (8 clips
per process) by its own statistics and a clip's embedding depends on its batch-mates. Use it only to
reproduce published numbers; the mode and batch size are recorded in `identity()` (docs/metrics.md).
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from eval.features.base import FeatureExtractor, WeightSpec

SAMPLE_RATE = 44_100
NUM_SAMPLES = 70_560            # 1.6 s at 44.1 kHz
N_FFT, WIN_LENGTH, HOP_LENGTH = 2048, 1654, 561
EMBED_DIM = 1024
LOG10_EPS = 1e-18
INPUT_RANGES = ("float", "int16")
BATCHNORM_MODES = ("eval", "train")
EVALUATOR_BATCH = 8             # MM-Diffusion's evaluator: 8 clips per batch per process


def int16_to_unit(x: torch.Tensor) -> torch.Tensor:
    """The network's own input map [-32768, 32767] -> [-1, 1], as ((x + 32768) * 2) / 65535 - 1 in this order.

    On [-1, 1] input (MM-Diffusion's evaluator) the audio sits ~1e-5 around a constant after this map,
    in the last bits of float32; another order, e.g. (x + 32768) * (2 / 65535) - 1, rounds differently
    and moves float32 embeddings by up to ~20% (tests/data/audioclip).
    """
    return ((x + 32768.0) * 2.0) / 65535.0 - 1.0


def blackman_harris(n: int) -> torch.Tensor:
    """Periodic 4-term Blackman-Harris window (scipy.signal.get_window('blackmanharris', n, fftbins=True))."""
    k = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    a = (0.35875, 0.48829, 0.14128, 0.01168)
    return (a[0] - a[1] * torch.cos(k) + a[2] * torch.cos(2 * k) - a[3] * torch.cos(3 * k)).float()


def frame_signal(x: torch.Tensor, frame_length: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """(B, T) -> windowed frames (B, F, frame_length); the signal is zero-padded (split left/right) to fit F frames."""
    t = x.shape[-1]
    n = 1 if t <= frame_length else 1 + math.ceil((t - frame_length) / hop)
    pad = (n - 1) * hop + frame_length - t
    if pad > 0:
        x = F.pad(x, (pad // 2, pad - pad // 2))
    return x.unfold(-1, frame_length, hop)[..., :n, :] * window


class LinearFBSP(nn.Module):
    """Learnable Fourier-like transform: bin k has centre fc_k, bandwidth fb_k and window shape m_k.

    weight_k(t) = sqrt(fb) * sinc(fb t / m)^m * exp(-i fc t), t = pi * linspace(-1, 1, n_fft) (+1e-8),
    divided by sqrt(n_fft) (normalised). Returns (..., bins, 2) real/imaginary parts.
    """

    def __init__(self, bins: int, n_fft: int) -> None:
        super().__init__()
        self.n_fft, self.eps = n_fft, 1e-8
        self.m = nn.Parameter(torch.zeros(bins))
        self.fb = nn.Parameter(torch.ones(bins))
        self.fc = nn.Parameter(torch.arange(bins, dtype=torch.float32))
        self.bias = nn.Parameter(torch.empty(0))         # the released model has none (an empty tensor)

    def weights(self) -> torch.Tensor:
        """(bins, n_fft, 2) complex weights as real/imaginary parts.

        Float32 rounding here reaches the embedding (the input signal lives in the last bits of
        float32, see `int16_to_unit`), so every step is taken in the order of the reference
        implementation: sinc^m through |.|^2 and the phase (sqrt, then squared again), sqrt(fb)
        applied last-but-one and 1/sqrt(n_fft) last.
        """
        t = math.pi * torch.linspace(-1.0, 1.0, self.n_fft, dtype=self.m.dtype, device=self.m.device) + self.eps
        m, fb, fc = self.m[:, None], self.fb[:, None], self.fc[:, None]       # (bins, 1)
        ker_re, ker_im = torch.cos(fc * t), -torch.sin(fc * t)                 # (bins, n_fft)
        scale = fb.sqrt()[..., None]                                          # (bins, 1, 1)
        arg = fb * t / (m + self.eps)
        win = torch.where(arg == 0, torch.ones_like(arg), torch.sin(arg) / arg)
        # win ** m for a real, possibly negative win, as a complex number |win|^m e^{i m phase}
        magnitude = (win ** 2) ** 0.5
        phase = torch.atan2(torch.zeros_like(win), win)
        mag = (magnitude ** 2) ** (0.5 * m)
        win_re, win_im = mag * torch.cos(m * phase), mag * torch.sin(m * phase)
        weights = scale * torch.stack([win_re * ker_re - win_im * ker_im, win_re * ker_im + win_im * ker_re], dim=-1)
        return weights / (self.n_fft ** 0.5)

    def forward(self, frames: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        w = self.weights() if weights is None else weights
        return torch.stack([F.linear(frames, w[..., 0]), F.linear(frames, w[..., 1])], dim=-1)


class Bottleneck(nn.Module):
    """ResNeXt bottleneck (1x1 -> grouped 3x3 -> 1x1) with an optional projection shortcut."""

    def __init__(self, cin: int, planes: int, stride: int, groups: int = 32, width_per_group: int = 4) -> None:
        super().__init__()
        width = planes * width_per_group // 64 * groups
        cout = planes * 4
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class Attention2d(nn.Module):
    """ESResNet attention: max-pool the block input to the block output size, depthwise + pointwise conv, sigmoid."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], padding: tuple[int, int]) -> None:
        super().__init__()
        self.conv_depth = nn.Conv2d(cin, cin, kernel, padding=padding, groups=cin)
        self.conv_point = nn.Conv2d(cin, cout, 1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        return torch.sigmoid(self.bn(self.conv_point(self.conv_depth(F.adaptive_max_pool2d(x, size)))))


class ESResNeXtFBSP(nn.Module):
    """int16-range waveform (B, T) at 44.1 kHz -> (B, 1024) AudioCLIP audio embedding (not normalised)."""

    LAYERS = (3, 4, 6, 3)
    # (in, out, kernel, padding) of att1..att5
    ATTENTION = ((64, 256, (3, 1), (1, 0)), (256, 512, (1, 5), (0, 2)), (512, 1024, (3, 1), (1, 0)),
                 (1024, 2048, (1, 5), (0, 2)), (2048, 2048, (3, 5), (1, 2)))

    def __init__(self, embed_dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), self.LAYERS)):
            layer = []
            for b in range(blocks):
                layer.append(Bottleneck(cin, planes, stride=2 if (b == 0 and i > 0) else 1))
                cin = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        for i, (a, b, k, p) in enumerate(self.ATTENTION):
            setattr(self, f"att{i + 1}", Attention2d(a, b, k, p))
        self.fc = nn.Linear(2048, embed_dim)
        self.fbsp = LinearFBSP(N_FFT // 2 + 1, N_FFT)
        self.register_buffer("window", blackman_harris(WIN_LENGTH))
        self._fbsp_weights: torch.Tensor | None = None

    def spectrogram_db(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, 3, 341, frames) power in dB, the 1025 bins cut to 3 x 341 bands."""
        frames = frame_signal(wave, WIN_LENGTH, HOP_LENGTH, self.window)            # (B, F, 1654)
        pad = N_FFT - WIN_LENGTH
        frames = F.pad(frames, (pad // 2, pad - pad // 2))                          # (B, F, 2048)
        spec = self.fbsp(frames, self._fbsp_weights).transpose(1, 2)                # (B, 1025, F, 2)
        band = spec.shape[1] // 3
        spec = spec[:, : 3 * band].reshape(spec.shape[0], 3, band, *spec.shape[2:])  # (B, 3, 341, F, 2)
        power = spec[..., 0] ** 2 + spec[..., 1] ** 2
        power = torch.where(power > 0, power, torch.full_like(power, LOG10_EPS))
        return 10.0 * torch.log10(power)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.spectrogram_db(int16_to_unit(wave))
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(1, 5):
            x_in = x
            x = getattr(self, f"layer{i}")(x)
            x = x * getattr(self, f"att{i}")(x_in, x.shape[-2:])
        pooled = F.adaptive_avg_pool2d(x, 1)                                        # (B, 2048, 1, 1)
        pooled = pooled * self.att5(x, pooled.shape[-2:])
        return self.fc(pooled.flatten(1))                                           # (B, 1024)

    def freeze_fbsp(self) -> "ESResNeXtFBSP":
        """Materialise the fbsp weights once (they depend on parameters only) for inference."""
        with torch.no_grad():
            self._fbsp_weights = self.fbsp.weights()
        return self


def audio_state_dict(checkpoint: dict[str, torch.Tensor], prefix: str = "audio.") -> dict[str, torch.Tensor]:
    """The audio-branch entries of a full AudioCLIP state dict, prefix removed."""
    return {k[len(prefix):]: v for k, v in checkpoint.items() if k.startswith(prefix)}


def load_audio_branch(model: ESResNeXtFBSP, checkpoint: dict[str, Any], source: str) -> None:
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{source}: expected an AudioCLIP state dict")
    if "state_dict" in checkpoint and isinstance(checkpoint["state_dict"], dict):
        checkpoint = checkpoint["state_dict"]
    state = audio_state_dict(checkpoint)
    if not state:
        raise KeyError(f"{source}: no 'audio.*' keys; this is not an AudioCLIP checkpoint")
    own = model.state_dict()
    need = {k for k in own if not k.endswith("num_batches_tracked")}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(need - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise KeyError(f"{source}: audio branch does not match ESResNeXt-fbsp; missing {missing[:5]}, "
                       f"unexpected {unexpected[:5]}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"{source}: 'audio.{k}' has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    model.load_state_dict(state, strict=False)


def build_model(checkpoint: dict[str, Any], source: str, batchnorm: str = "eval") -> ESResNeXtFBSP:
    """The audio branch of an AudioCLIP state dict, ready for inference (fbsp weights materialised).

    batchnorm="eval" (default): BatchNorm uses the checkpoint's running statistics, so a clip's
    embedding does not depend on the other clips in its batch. batchnorm="train" reproduces
    MM-Diffusion's evaluator, which never calls .eval(): every BatchNorm normalises by the
    statistics of the current batch (the running statistics are left unchanged here, momentum 0).
    """
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm must be one of {BATCHNORM_MODES}, got {batchnorm!r}")
    model = ESResNeXtFBSP()
    load_audio_branch(model, checkpoint, source)
    model.eval().freeze_fbsp()
    if batchnorm == "train":
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.train()
                module.momentum = 0.0
    return model


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """(N, T) float -> (N, T * target / rate) by polyphase filtering (scipy.signal.resample_poly)."""
    if rate == target:
        return wave
    from scipy.signal import resample_poly

    ratio = Fraction(target, rate)
    return resample_poly(wave, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32)


def fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Cut (N, T) to its first n samples, or zero-pad at the end."""
    if wave.shape[-1] >= n:
        return wave[..., :n]
    return np.pad(wave, ((0, 0), (0, n - wave.shape[-1])))


class AudioCLIPExtractor(FeatureExtractor):
    """FAD features: float waveforms (N, samples) at `sample_rate` -> (N, 1024) AudioCLIP audio embeddings."""

    name = "audioclip"
    input_kind = "audio"
    feature_dim = EMBED_DIM
    sample_rate = SAMPLE_RATE
    weights = WeightSpec("AudioCLIP-Full-Training.pt", "AudioCLIP (audio branch ESResNeXt-fbsp)",
                         "the AudioCLIP GitHub releases (AndreyGuzhov/AudioCLIP, release v0.1, "
                         "AudioCLIP-Full-Training.pt)")

    def __init__(self, checkpoint=None, device=None, weights_dir=None, input_range: str = "float",
                 batchnorm: str = "eval", max_batch: int | None = None) -> None:
        if input_range not in INPUT_RANGES:
            raise ValueError(f"input_range must be one of {INPUT_RANGES}, got {input_range!r}")
        if batchnorm not in BATCHNORM_MODES:
            raise ValueError(f"batchnorm must be one of {BATCHNORM_MODES}, got {batchnorm!r}")
        if max_batch is not None and (max_batch < 1 or (batchnorm == "train" and max_batch < 2)):
            raise ValueError(f"max_batch must be >= {2 if batchnorm == 'train' else 1}, got {max_batch}")
        super().__init__(checkpoint, device, weights_dir)
        self.input_range, self.batchnorm = input_range, batchnorm
        self.max_batch = max_batch or (EVALUATOR_BATCH if batchnorm == "train" else 16)
        self.model: ESResNeXtFBSP | None = None

    @property
    def batch_independent(self) -> bool:
        """Whether a clip's embedding is the same in any batch (not with training-mode BatchNorm)."""
        return self.batchnorm != "train"

    def options(self) -> dict[str, Any]:
        opts = {"input_range": self.input_range, "batchnorm": self.batchnorm, "num_samples": NUM_SAMPLES,
                "crop": "first 1.6 s, zero-padded at the end", "resampler": "scipy.resample_poly",
                "output": "audio embedding, un-normalised"}
        if self.batchnorm == "train":      # features depend on the batch: its size is part of the measurement
            opts.update(batch_size=self.max_batch, compat="MM-Diffusion evaluator: BatchNorm in training mode")
        return opts

    def _load(self) -> None:
        ckpt = torch.load(str(self.weight_path), map_location="cpu", weights_only=True)
        self.model = build_model(ckpt, str(self.weight_path), self.batchnorm).to(self.device)
        self.model._fbsp_weights = self.model._fbsp_weights.to(self.device)

    def prepare(self, wave: np.ndarray, rate: int) -> np.ndarray:
        """(N, T) at `rate` -> (N, 70560) float32 at 44.1 kHz in the network's input range."""
        wave = np.asarray(wave, np.float32)
        if wave.ndim != 2:
            raise ValueError(f"audio must be (N, samples) mono waveforms, got shape {wave.shape}")
        if rate <= 0:
            raise ValueError(f"sample rate must be positive, got {rate}")
        x = fit_length(resample(wave, rate, SAMPLE_RATE), NUM_SAMPLES)
        return x * 32768.0 if self.input_range == "int16" else x

    @torch.no_grad()
    def _extract(self, wave: np.ndarray, rate: int) -> np.ndarray:
        x = self.prepare(wave, rate)
        if self.batchnorm == "train" and len(x) % self.max_batch == 1:
            raise ValueError(f"batchnorm='train' normalises each batch by its own statistics and cannot take a batch "
                             f"of one clip; {len(x)} clips in batches of {self.max_batch} leave one alone")
        out = [self.model(torch.from_numpy(np.ascontiguousarray(x[i: i + self.max_batch])).to(self.device)).cpu().numpy()
               for i in range(0, len(x), self.max_batch)]
        return np.concatenate(out) if out else np.zeros((0, EMBED_DIM), np.float32)
