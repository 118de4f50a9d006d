"""Feature extractors: one small base class, a registry by name, and weight-file resolution.

    extractor = load_extractor("i3d")                 # weights looked up, loaded on first call
    feats = extractor(videos_uint8)                   # (N, T, H, W, 3) uint8 -> (N, 400) float32
    feats = load_extractor("audioclip")(wave, sample_rate=16000)   # (N, samples) -> (N, 1024)

Weights are never downloaded. A checkpoint is found as: the `checkpoint` argument, else the
file's default name inside the weights directory: the `weights_dir` argument (the CLIs'
`--weights-dir`), else $MMDIFF_WEIGHTS_DIR, else ~/.cache/mmdiff/weights. A missing file raises
`MissingWeightsError` naming the file, where it is published and where to put it.
"""
from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmdiff.atomic import file_sha256

WEIGHTS_ENV = "MMDIFF_WEIGHTS_DIR"
DEFAULT_WEIGHTS_DIR = Path("~/.cache/mmdiff/weights")

# name -> "module:Class"; imported only when asked for, so optional packages stay optional.
EXTRACTORS: dict[str, str] = {
    "i3d": "eval.features.i3d:I3DExtractor",
    "audioclip": "eval.features.audioclip:AudioCLIPExtractor",
    "clap": "eval.features.clap:CLAPExtractor",
}


class MissingWeightsError(FileNotFoundError):
    """A weight file is not on disk; the message says what it is, where it is published and where to put it."""

    def __init__(self, message: str, weight_file: str = "", put_at: Path | None = None):
        super().__init__(message)
        self.weight_file, self.put_at = weight_file, put_at

    def short(self) -> str:
        """One line for a UI beside the metric: which file is missing and the folder to put it in."""
        if not self.put_at:
            return str(self).splitlines()[0]
        return f"{self.weight_file} not found; put it in {self.put_at.parent}"


@dataclass(frozen=True)
class WeightSpec:
    """A published weight file: its default file name, what it is and where users get it."""

    filename: str
    description: str
    published: str


def resolve_weights_dir(weights_dir: str | os.PathLike | None = None) -> Path:
    """Weights directory: argument > $MMDIFF_WEIGHTS_DIR > ~/.cache/mmdiff/weights."""
    if weights_dir is not None:
        return Path(weights_dir).expanduser()
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env).expanduser() if env else DEFAULT_WEIGHTS_DIR.expanduser()


def missing_weights_message(spec: WeightSpec, looked_at: list[Path], weights_dir: Path) -> str:
    tried = "\n".join(f"  - {p}" for p in looked_at)
    return (f"{spec.description}: weight file '{spec.filename}' not found. Looked at:\n{tried}\n"
            f"It is published at: {spec.published}\n"
            f"Put it at {weights_dir / spec.filename} (choose the folder with --weights-dir or "
            f"${WEIGHTS_ENV}), or pass its path as the checkpoint. Results are never computed with "
            "random weights.")


def find_weight_file(spec: WeightSpec, checkpoint: str | os.PathLike | None,
                     weights_dir: str | os.PathLike | None, extra: list[Path] = ()) -> Path:
    """The checkpoint path if given (must exist), else weights_dir/filename, else the `extra` candidates."""
    wdir = resolve_weights_dir(weights_dir)
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise MissingWeightsError(missing_weights_message(spec, [path], wdir), spec.filename, path)
        return path
    candidates = [wdir / spec.filename, *extra]
    for path in candidates:
        if path.is_file():
            return path
    raise MissingWeightsError(missing_weights_message(spec, candidates, wdir), spec.filename,
                              wdir / spec.filename)


def resolve_device(device: str | None) -> str:
    """mmdiff's `--device` rule (None or "auto": CUDA when available; an absent CUDA is a clear error)."""
    from mmdiff.device import resolve_device as resolve

    return str(resolve(device))


class FeatureExtractor(ABC):
    """Maps a batch of clips to an (N, feature_dim) float32 array; weights load on first use.

    Subclasses set the class attributes and implement `_load` (returns nothing; sets up the
    network from `self.weight_path`) and `_extract` (batch -> features).
    """

    name: ClassVar[str]
    input_kind: ClassVar[str]               # "video": uint8 (N, T, H, W, 3); "audio": float (N, samples)
    feature_dim: ClassVar[int]
    sample_rate: ClassVar[int | None] = None  # audio: the rate the network runs at
    min_frames: ClassVar[int | None] = None   # video: shortest clip the network accepts
    # audio: True when appending zeros to a waveform leaves its features unchanged, so a batch may
    # zero-pad clips of different lengths to one array; False (e.g. CLAP's repeat-padding) makes
    # the protocol call the extractor once per clip length instead.
    zero_pad_invariant: ClassVar[bool] = True
    weights: ClassVar[WeightSpec]

    def __init__(self, checkpoint: str | os.PathLike | None = None, device: str | None = None,
                 weights_dir: str | os.PathLike | None = None) -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.weights_dir = weights_dir
        self._weight_path: Path | None = None
        self._weight_sha256: str | None = None
        self._loaded = False

    # -- weights ------------------------------------------------------------------------
    def default_weight_candidates(self) -> list[Path]:
        """Extra places a weight file may already be (e.g. inside an installed package)."""
        return []

    @property
    def weight_path(self) -> Path:
        if self._weight_path is None:
            self._weight_path = find_weight_file(self.weights, self.checkpoint, self.weights_dir,
                                                 self.default_weight_candidates())
        return self._weight_path

    @property
    def weight_sha256(self) -> str:
        if self._weight_sha256 is None:
            self._weight_sha256 = file_sha256(self.weight_path)
        return self._weight_sha256

    def load(self) -> "FeatureExtractor":
        if not self._loaded:
            self.device = resolve_device(self.device)
            self._load()
            self._loaded = True
        return self

    # -- description, for cache keys and result files -----------------------------------------
    def options(self) -> dict[str, Any]:
        """Everything besides the weights that changes the features (preprocessing etc.)."""
        return {}

    def identity(self) -> dict[str, Any]:
        return {"extractor": self.name, "weights_file": self.weight_path.name,
                "weights_sha256": self.weight_sha256, "feature_dim": self.feature_dim,
                "sample_rate": self.sample_rate, **self.options()}

    # -- extraction ---------------------------------------------------------------------------
    def __call__(self, batch: np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        self.load()
        if self.input_kind == "video":
            if sample_rate is not None:
                raise ValueError(f"{self.name} takes videos; sample_rate is for audio extractors")
            out = self._extract(batch)
        else:
            if sample_rate is None:
                raise ValueError(f"{self.name} needs the sample_rate of the waveforms")
            out = self._extract(batch, int(sample_rate))
        out = np.asarray(out, dtype=np.float32)
        assert out.ndim == 2 and out.shape[1] == self.feature_dim, out.shape
        return out

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _extract(self, batch: np.ndarray, *args: Any) -> np.ndarray: ...


def extractor_class(name: str) -> type[FeatureExtractor]:
    if name not in EXTRACTORS:
        raise ValueError(f"unknown feature extractor {name!r}; available: {', '.join(sorted(EXTRACTORS))}")
    module, cls = EXTRACTORS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def load_extractor(name: str, checkpoint: str | os.PathLike | None = None, device: str | None = None,
                   weights_dir: str | os.PathLike | None = None, **options: Any) -> FeatureExtractor:
    """The extractor registered as `name` (i3d, audioclip, clap); weights are resolved and loaded lazily."""
    return extractor_class(name)(checkpoint=checkpoint, device=device, weights_dir=weights_dir, **options)
