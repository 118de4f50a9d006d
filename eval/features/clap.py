"""LAION-CLAP audio embeddings (Wu et al. 2023) for FAD as CMMD / fadtk compute it: 48 kHz, 512-d, unit norm.

Optional: needs the `laion-clap==1.1.7` package and its dependencies (numpy<2, torchvision, ...),
which do not live beside this project's main requirements; install them into a separate
environment with `pip install -r requirements-clap.txt` (see that file).

Works offline from a local checkpoint (`630k-audioset-best.pt`, HTSAT-tiny, or the music
checkpoints such as `music_audioset_epoch_15_esc_90.14.pt`, HTSAT-base). Only the audio branch
is built: HTSAT from laion-clap's `clap_module/htsat.py` (imported under a private package name,
so that laion_clap's __init__ files never run and `import laion_clap` stays as it was) plus the
2-layer audio projection, loaded from the checkpoint's `audio_branch.*` / `audio_projection.*`
entries with `torch.load(weights_only=True)`. laion-clap's own entry points are avoided on
purpose: importing `laion_clap` loads three tokenizers from the Hugging Face hub and
`CLAP_Module(...)` builds the roberta-base text model from the hub. The hub is switched off
(HF_HUB_OFFLINE=1) in any case. Checked equal to laion-clap's own `get_audio_embedding_from_data`
(max abs difference < 1e-7, float32 rounding) with benchmarks/check_clap.py; see eval/README.md.

Input handling as laion-clap's non-fusion path: resample to 48 kHz, quantise to int16 and back,
clips shorter than 10 s are repeated to fill 10 s then zero-padded (its "repeatpad"); longer
clips are cut to their first 10 s (laion-clap crops at random; a metric should not).
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

from eval.features.audioclip import resample
from eval.features.base import FeatureExtractor, WeightSpec

SAMPLE_RATE = 48_000
CLIP_SAMPLES = 480_000          # 10 s
JOINT_DIM = 512
INSTALL_HINT = ("the 'clap' extractor needs the optional package laion-clap==1.1.7 and its dependencies "
                "(numpy<2, torchvision, torchlibrosa, h5py, ...), which conflict with this project's main "
                "environment; install them into a separate environment: `pip install -r requirements-clap.txt`")


def laion_clap_version() -> str:
    """The installed laion-clap's version (from its package metadata), 'unknown' if it has none."""
    from importlib import metadata

    try:
        return metadata.version("laion-clap")
    except metadata.PackageNotFoundError:
        return "unknown"


class OptionalDependencyError(ImportError):
    """An optional package is missing; the message says how to install it."""


# ------------------------------------------------------------------------------ pure helpers


def clap_audio_state(checkpoint: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a laion-clap checkpoint into (audio_branch state, audio_projection state).

    Accepts the released files ({'state_dict': ..., 'epoch': ...}) or a bare state dict; strips the
    DistributedDataParallel 'module.' prefix; drops the text branch and everything else.
    """
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError("not a laion-clap checkpoint: expected a state dict")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    branch = {k[len("audio_branch."):]: v for k, v in state.items() if k.startswith("audio_branch.")}
    proj = {k[len("audio_projection."):]: v for k, v in state.items() if k.startswith("audio_projection.")}
    if not branch or not proj:
        raise KeyError("not a laion-clap checkpoint: no 'audio_branch.*' / 'audio_projection.*' entries")
    return branch, proj


def clap_model_name(branch: dict[str, Any], proj: dict[str, Any]) -> str:
    """'HTSAT-tiny' (768-d audio embedding) or 'HTSAT-base' (1024-d), read off the checkpoint."""
    if any(k.startswith("fusion_model.") or k.startswith("mel_conv2d.") for k in branch):
        raise ValueError("fusion CLAP checkpoints (e.g. 630k-audioset-fusion-best.pt) are not supported; "
                         "use a non-fusion checkpoint such as 630k-audioset-best.pt")
    width = tuple(proj["0.weight"].shape)[1]
    names = {768: "HTSAT-tiny", 1024: "HTSAT-base"}
    if width not in names:
        raise ValueError(f"unknown CLAP audio encoder: projection input width {width} (expected 768 or 1024)")
    return names[width]


def int16_round_trip(wave: np.ndarray) -> np.ndarray:
    """laion-clap's float32 -> int16 -> float32 quantisation (clip to [-1, 1], scale by 32767).

    Bit for bit as its `int16_to_float32(float32_to_int16(x))` (which divides in float64 and then
    rounds to float32: the same float32 for every one of the 65,536 int16 values).
    """
    return (np.clip(wave, -1.0, 1.0) * 32767.0).astype(np.int16).astype(np.float32) / 32767.0


def repeat_pad(wave: np.ndarray, n: int = CLIP_SAMPLES) -> np.ndarray:
    """(N, T) -> (N, n): repeat whole clips floor(n / T) times then zero-pad; longer clips keep their first n."""
    t = wave.shape[-1]
    if t >= n:
        return wave[..., :n]
    if t == 0:
        raise ValueError("empty waveform")
    reps = np.tile(wave, (1, n // t))
    return np.pad(reps, ((0, 0), (0, n - reps.shape[-1])))


def prepare(wave: np.ndarray, rate: int) -> np.ndarray:
    """(N, T) float at `rate` -> (N, 480000) float32 as laion-clap feeds its audio branch."""
    wave = np.asarray(wave, np.float32)
    if wave.ndim != 2:
        raise ValueError(f"audio must be (N, samples) mono waveforms, got shape {wave.shape}")
    return repeat_pad(int16_round_trip(resample(wave, rate, SAMPLE_RATE)))


# ------------------------------------------------------------------------------ building the audio branch


# laion_clap's package directories are mounted under this private name, as bare packages whose
# __init__ files never run: `import laion_clap` itself stays untouched (and usable) in the process.
PRIVATE_PACKAGE = "_mmdiff_laion_clap"


def _laion_clap_dir() -> Path:
    try:
        spec = importlib.util.find_spec("laion_clap")
    except (ImportError, ValueError):                   # ValueError: a laion_clap module without a spec
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise OptionalDependencyError(INSTALL_HINT)
    return Path(list(spec.submodule_search_locations)[0])


def import_htsat():
    """laion_clap/clap_module/htsat.py without running laion_clap/__init__ (which reaches for the hub).

    The module is imported as `_mmdiff_laion_clap.clap_module.htsat` (its relative imports, .utils
    and .feature_fusion, resolve inside that private package); repeated calls return the same module.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    root = _laion_clap_dir()
    for name, path in ((PRIVATE_PACKAGE, root), (f"{PRIVATE_PACKAGE}.clap_module", root / "clap_module")):
        if name not in sys.modules:
            spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
            spec.submodule_search_locations = [str(path)]
            sys.modules[name] = importlib.util.module_from_spec(spec)
    try:
        htsat = importlib.import_module(f"{PRIVATE_PACKAGE}.clap_module.htsat")
    except ImportError as e:
        raise OptionalDependencyError(f"{INSTALL_HINT} (import failed: {e})") from e
    return htsat, root


def build_audio_branch(model_name: str):
    """(HTSAT audio branch, audio projection) modules of a non-fusion CLAP model."""
    import torch.nn as nn

    htsat, root = import_htsat()
    cfg = json.loads((root / "clap_module" / "model_configs" / f"{model_name}.json").read_text())
    audio_cfg = types.SimpleNamespace(**cfg["audio_cfg"])
    branch = htsat.create_htsat_model(audio_cfg, enable_fusion=False, fusion_type="None")
    embed = cfg["embed_dim"]
    proj = nn.Sequential(nn.Linear(embed, JOINT_DIM), nn.ReLU(), nn.Linear(JOINT_DIM, JOINT_DIM))
    return branch, proj


class CLAPExtractor(FeatureExtractor):
    """FAD features: float waveforms (N, samples) at `sample_rate` -> (N, 512) unit-norm CLAP audio embeddings."""

    name = "clap"
    input_kind = "audio"
    feature_dim = JOINT_DIM
    sample_rate = SAMPLE_RATE
    zero_pad_invariant = False          # repeat-padding: a zero-padded clip is repeated with its zeros
    weights = WeightSpec("630k-audioset-best.pt", "LAION-CLAP (630k-audioset-best.pt or a music checkpoint)",
                         "the laion_clap model card on Hugging Face (lukewys/laion_clap: 630k-audioset-best.pt, "
                         "music_audioset_epoch_15_esc_90.14.pt)")

    def __init__(self, checkpoint=None, device=None, weights_dir=None, max_batch: int = 8) -> None:
        _laion_clap_dir()                                   # say how to install it before anything else
        super().__init__(checkpoint, device, weights_dir)
        self.max_batch = max_batch
        self.model_name: str | None = None

    def options(self) -> dict[str, Any]:
        # Asked before the first batch (cache keys, result files): the encoder is read off the
        # checkpoint then, without building the network.
        if self.model_name is None:
            self.model_name = clap_model_name(*clap_audio_state(self._read_checkpoint(mmap=True)))
        return {"input": "48 kHz, int16 round trip, each clip repeat-padded to 10 s, first 10 s", "output": "unit-norm",
                "laion_clap": laion_clap_version(), "audio_encoder": self.model_name}

    def _read_checkpoint(self, mmap: bool = False) -> dict[str, Any]:
        """The checkpoint as plain tensors (weights_only=True); mmap=True reads no tensor data up front."""
        import torch

        try:
            return torch.load(str(self.weight_path), map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as e:  # noqa: BLE001 - torch raises UnpicklingError and others
            if mmap:                               # e.g. a file in torch's legacy (non-zip) format
                return self._read_checkpoint(mmap=False)
            raise ValueError(f"{self.weight_path}: cannot be read as plain tensors (weights_only=True): {e}") from e

    def _load(self) -> None:
        branch_state, proj_state = clap_audio_state(self._read_checkpoint())
        self.model_name = clap_model_name(branch_state, proj_state)
        branch, proj = build_audio_branch(self.model_name)
        missing, unexpected = branch.load_state_dict(branch_state, strict=False)
        missing = [k for k in missing if "num_batches_tracked" not in k]
        if missing:
            raise KeyError(f"{self.weight_path}: audio branch keys missing: {missing[:5]}")
        proj.load_state_dict(proj_state)
        self.branch, self.proj = branch.eval().to(self.device), proj.eval().to(self.device)

    def _extract(self, wave: np.ndarray, rate: int) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        x = prepare(wave, rate)
        out = []
        with torch.no_grad():
            for i in range(0, len(x), self.max_batch):
                w = torch.from_numpy(x[i: i + self.max_batch]).to(self.device)
                inp = {"waveform": w, "longer": torch.zeros(len(w), 1, dtype=torch.bool, device=self.device)}
                emb = self.branch(inp, device=self.device)["embedding"]
                out.append(F.normalize(self.proj(emb), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, JOINT_DIM), np.float32)
