"""The training-ready audio-video cache: format, atomic writes, and mmap reads.

A cache is a folder:
    index.json                    format/version, the spec (fps, size, rate), settings, items, sources
    items/<id>.video.npy          uint8 (N, H, W, 3) RGB frames at spec.fps, spec.video_size
    items/<id>.audio.npy          int16 (N * audio_rate / fps,) mono, value = round(x * 32767)

Frame k of an item covers [k / fps, (k + 1) / fps) and audio samples
[k * spf, (k + 1) * spf), spf = audio_rate / fps (a whole number by construction).
Every file is written to a temp name and renamed, the index last, so an interrupted writer
leaves either the old or the new state, never a torn one.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmdiff.atomic import atomic_path, write_text

CACHE_FORMAT = "mmdiff-av-cache"
CACHE_VERSION = 1
INDEX_NAME = "index.json"
ITEMS_DIR = "items"
AUDIO_SCALE = 32767.0


class CacheError(ValueError):
    """The cache folder is missing, malformed, or from an incompatible writer."""


class CacheConfigMismatch(ValueError):
    """The cache was made at a different fps / size / audio rate than asked for."""


@dataclass(frozen=True)
class CacheSpec:
    """What every item in the cache is decoded to."""

    fps: float
    video_size: tuple[int, int]     # (H, W)
    audio_rate: int
    resize: str = "crop"

    def __post_init__(self) -> None:
        object.__setattr__(self, "video_size", tuple(int(s) for s in self.video_size))
        if self.fps <= 0 or self.audio_rate <= 0 or min(self.video_size) < 1:
            raise ValueError(f"invalid cache spec {self}")
        spf = self.audio_rate / self.fps
        if abs(spf - round(spf)) > 1e-9:
            raise ValueError(
                f"audio_rate {self.audio_rate} must be a whole multiple of fps {self.fps} so that "
                "each video frame spans a whole number of audio samples")

    @property
    def samples_per_frame(self) -> int:
        return round(self.audio_rate / self.fps)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["video_size"] = list(self.video_size)
        return d

    @classmethod
    def from_model_config(cls, cfg, resize: str = "crop") -> "CacheSpec":
        return cls(fps=cfg.fps, video_size=(cfg.video_size, cfg.video_size),
                   audio_rate=cfg.audio_rate, resize=resize)


@dataclass
class CacheItem:
    """One stored stretch of audio-video."""

    id: str
    frames: int
    source: str = ""                 # source path relative to the --src folder (or "synthetic")
    start_seconds: float = 0.0       # where in the source the item starts
    meta: dict[str, Any] = field(default_factory=dict)   # e.g. caption and event times

    @property
    def video_file(self) -> str:
        return f"{ITEMS_DIR}/{self.id}.video.npy"

    @property
    def audio_file(self) -> str:
        return f"{ITEMS_DIR}/{self.id}.audio.npy"


@dataclass
class CacheIndex:
    """index.json in memory."""

    spec: CacheSpec
    settings: dict[str, Any] = field(default_factory=dict)
    items: list[CacheItem] = field(default_factory=list)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)   # rel path -> status record

    def to_dict(self) -> dict[str, Any]:
        return {"format": CACHE_FORMAT, "version": CACHE_VERSION, "spec": self.spec.to_dict(),
                "layout": {"video": "uint8 (N, H, W, 3)", "audio": "int16 (N * audio_rate / fps,)"},
                "settings": self.settings, "items": [asdict(i) for i in self.items],
                "sources": self.sources}


# ---------------------------------------------------------------------------------------------
def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def audio_to_int16(audio: np.ndarray) -> np.ndarray:
    """(T,) float in [-1, 1] -> (T,) int16."""
    return np.round(np.clip(audio, -1.0, 1.0) * AUDIO_SCALE).astype(np.int16)


def int16_to_audio(pcm: np.ndarray) -> np.ndarray:
    """(T,) int16 -> (T,) float32 in [-1, 1]."""
    return np.asarray(pcm, dtype=np.float32) / AUDIO_SCALE


# ---------------------------------------------------------------------------------------------
def write_item(cache_dir: str | os.PathLike, spec: CacheSpec, item: CacheItem, video: np.ndarray,
               audio: np.ndarray) -> CacheItem:
    """Store one item's arrays (video uint8 (N, H, W, 3), audio float (N * spf,)); index untouched."""
    n, h, w, c = video.shape
    if video.dtype != np.uint8 or c != 3 or (h, w) != spec.video_size:
        raise ValueError(f"item {item.id}: video must be uint8 (N, {spec.video_size[0]}, "
                         f"{spec.video_size[1]}, 3), got {video.dtype} {video.shape}")
    if audio.shape != (n * spec.samples_per_frame,):
        raise ValueError(f"item {item.id}: audio must have {n} frames x {spec.samples_per_frame} = "
                         f"{n * spec.samples_per_frame} samples, got shape {audio.shape}")
    root = Path(cache_dir)
    (root / ITEMS_DIR).mkdir(parents=True, exist_ok=True)
    atomic_save_npy(root / item.audio_file, audio_to_int16(audio))
    atomic_save_npy(root / item.video_file, video)
    item.frames = n
    return item


def remove_orphans(cache_dir: str | os.PathLike, index: CacheIndex) -> list[str]:
    """Delete item files and temp files the index does not reference (left by an interrupted run)."""
    items_dir = Path(cache_dir) / ITEMS_DIR
    if not items_dir.is_dir():
        return []
    keep = {Path(f).name for i in index.items for f in (i.video_file, i.audio_file)}
    removed = [p.name for p in items_dir.iterdir() if p.is_file() and p.name not in keep]
    for name in removed:
        (items_dir / name).unlink(missing_ok=True)
    return removed


def save_index(cache_dir: str | os.PathLike, index: CacheIndex) -> None:
    """Rewrite index.json atomically (items sorted by id so equal caches give equal files)."""
    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    index.items.sort(key=lambda i: i.id)
    index.sources = dict(sorted(index.sources.items()))
    write_text(root / INDEX_NAME, json.dumps(index.to_dict(), indent=1), fsync=True)


def load_index(cache_dir: str | os.PathLike) -> CacheIndex:
    path = Path(cache_dir) / INDEX_NAME
    if not path.is_file():
        raise CacheError(f"{cache_dir}: no {INDEX_NAME}; is this a cache made by mmdiff.data.prepare "
                         "or mmdiff.data.synthetic --cache?")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CacheError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(d, dict) or d.get("format") != CACHE_FORMAT:
        raise CacheError(f"{path}: not an {CACHE_FORMAT} index")
    if d.get("version") != CACHE_VERSION:
        raise CacheError(f"{path}: cache version {d.get('version')}, this mmdiff reads {CACHE_VERSION}")
    try:
        spec = CacheSpec(**d["spec"])
        items = [CacheItem(**i) for i in d["items"]]
    except (KeyError, TypeError, ValueError) as e:
        raise CacheError(f"{path}: malformed spec or items ({e})") from e
    return CacheIndex(spec=spec, settings=d.get("settings", {}), items=items,
                      sources=d.get("sources", {}))


def open_video(cache_dir: str | os.PathLike, item: CacheItem) -> np.ndarray:
    """uint8 (N, H, W, 3), memory-mapped read-only."""
    return _open_npy(Path(cache_dir) / item.video_file)


def open_audio(cache_dir: str | os.PathLike, item: CacheItem) -> np.ndarray:
    """int16 (N * spf,), memory-mapped read-only; int16_to_audio turns it into [-1, 1]."""
    return _open_npy(Path(cache_dir) / item.audio_file)


def _open_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CacheError(f"{path}: cannot open cache array ({e}); re-run prepare to rebuild it") from e


# ---------------------------------------------------------------------------------------------
def load_config_check(cache: "str | os.PathLike | CacheIndex", model_config) -> CacheIndex:
    """Raise CacheConfigMismatch unless the cache's fps / size / rate are the model's; return the index."""
    index = cache if isinstance(cache, CacheIndex) else load_index(cache)
    s, m = index.spec, model_config
    problems = []
    if abs(s.fps - m.fps) > 1e-9:
        problems.append(f"fps {s.fps} vs model {m.fps}")
    if s.video_size != (m.video_size, m.video_size):
        problems.append(f"video size {s.video_size[0]}x{s.video_size[1]} vs model "
                        f"{m.video_size}x{m.video_size}")
    if s.audio_rate != m.audio_rate:
        problems.append(f"audio rate {s.audio_rate} Hz vs model {m.audio_rate} Hz")
    if problems:
        where = cache if not isinstance(cache, CacheIndex) else "cache"
        raise CacheConfigMismatch(
            f"{where} does not match the model config: {'; '.join(problems)}. Re-run "
            "`python -m mmdiff.data.prepare` with the model's preset (or matching --fps/--size/"
            "--audio-rate) into a new --out folder.")
    if not any(i.frames >= m.video_frames for i in index.items):
        raise CacheConfigMismatch(f"no item in the cache has the model's {m.video_frames} frames")
    return index


__all__ = [
    "CacheSpec", "CacheItem", "CacheIndex", "CacheError", "CacheConfigMismatch", "write_item",
    "remove_orphans", "save_index", "load_index", "open_video", "open_audio", "audio_to_int16",
    "int16_to_audio", "load_config_check", "atomic_save_npy", "INDEX_NAME",
]
