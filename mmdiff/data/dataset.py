"""Random, time-aligned (video, audio) training clips served from a prepared cache.

A clip starting at frame s of an item holds frames s .. s+F-1 and audio samples
s*spf .. (s+F)*spf - 1 (spf = audio_rate / fps), i.e. exactly the same stretch of time.
Randomness (which start, whether to flip) comes from a generator seeded by (seed, epoch, index),
so a run is reproducible whatever the DataLoader's worker count or order; call set_epoch(e)
before each epoch (as with DistributedSampler) to draw new clips.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmdiff.data.cache import (CacheError, CacheIndex, CacheItem, int16_to_audio, load_config_check,
                               load_index, open_audio, open_video)
from mmdiff.data.pixels import frames_to_model

START_MODES = ("random", "all")
MAX_OPEN_ITEMS = 64        # memory maps kept open per process (two file handles each)


class AVClipDataset(Dataset):
    """(video (F, 3, H, W), audio (1, T)) float32 clips in [-1, 1] from a cache folder.

    :param cache_dir: folder written by mmdiff.data.prepare or mmdiff.data.synthetic --cache.
    :param clip_frames: F; taken from model_config when that is given.
    :param model_config: a ModelConfig; the cache's fps/size/rate must match it.
    :param starts: "random": __len__ = items x clips_per_item and index i draws its start at random;
        "all": __len__ = every start at `stride` frames in every item, index i is a fixed start.
    :param flip_prob: probability of a horizontal flip (video only).
    """

    def __init__(self, cache_dir: str | os.PathLike, clip_frames: int | None = None, model_config=None,
                 seed: int = 0, flip_prob: float = 0.5, starts: str = "random",
                 clips_per_item: int = 1, stride: int = 1) -> None:
        self.cache_dir = str(cache_dir)
        index = (load_config_check(cache_dir, model_config) if model_config is not None
                 else load_index(cache_dir))
        self.spec = index.spec
        self.clip_frames = int(model_config.video_frames if model_config is not None else (clip_frames or 16))
        if starts not in START_MODES:
            raise ValueError(f"starts must be one of {START_MODES}, got {starts!r}")
        if not 0.0 <= flip_prob <= 1.0 or clips_per_item < 1 or stride < 1:
            raise ValueError(f"need 0 <= flip_prob <= 1, clips_per_item >= 1, stride >= 1; got "
                             f"{flip_prob}, {clips_per_item}, {stride}")
        self.items: list[CacheItem] = [i for i in index.items if i.frames >= self.clip_frames]
        if not self.items:
            raise ValueError(f"{cache_dir}: no item has {self.clip_frames} frames "
                             f"({len(index.items)} items in the cache)")
        self.seed, self.flip_prob, self.starts = int(seed), float(flip_prob), starts
        self.clips_per_item, self.stride, self.epoch = int(clips_per_item), int(stride), 0
        n_starts = [(i.frames - self.clip_frames) // self.stride + 1 for i in self.items]
        self._cum_starts = np.cumsum([0] + n_starts)          # (items + 1,)
        self._arrays: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()   # LRU

    # -----------------------------------------------------------------------------------------
    @property
    def samples_per_clip(self) -> int:
        return self.clip_frames * self.spec.samples_per_frame

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.starts == "all":
            return int(self._cum_starts[-1])
        return len(self.items) * self.clips_per_item

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def locate(self, index: int) -> tuple[int, int, bool]:
        """(item number, start frame, flip) of clip `index` at the current epoch."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} clips")
        rng = self.rng(index)
        if self.starts == "all":
            item = int(np.searchsorted(self._cum_starts, index, side="right") - 1)
            start = (index - int(self._cum_starts[item])) * self.stride
        else:
            item = index // self.clips_per_item
            start = int(rng.integers(0, self.items[item].frames - self.clip_frames + 1))
        return item, start, bool(rng.random() < self.flip_prob)

    def _open(self, item: CacheItem) -> tuple[np.ndarray, np.ndarray]:
        if item.id in self._arrays:
            self._arrays.move_to_end(item.id)
        else:
            video, audio = open_video(self.cache_dir, item), open_audio(self.cache_dir, item)
            spf, (h, w) = self.spec.samples_per_frame, self.spec.video_size
            if video.shape != (item.frames, h, w, 3) or audio.shape != (item.frames * spf,):
                raise CacheError(f"{self.cache_dir}: item {item.id} has arrays {video.shape} and "
                                 f"{audio.shape}, index says {item.frames} frames of {h}x{w} and "
                                 f"{item.frames * spf} samples; re-run prepare to rebuild it")
            self._arrays[item.id] = (video, audio)
            if len(self._arrays) > MAX_OPEN_ITEMS:
                self._arrays.popitem(last=False)
        return self._arrays[item.id]

    def clip_arrays(self, item_no: int, start: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
        """numpy (video (F, 3, H, W), audio (1, T)) float32 of one clip."""
        video, audio = self._open(self.items[item_no])
        spf = self.spec.samples_per_frame
        frames = np.asarray(video[start:start + self.clip_frames])           # (F, H, W, 3) uint8
        if flip:
            frames = frames[:, :, ::-1]
        v = frames_to_model(frames).numpy()                                   # (F, 3, H, W)
        a = int16_to_audio(audio[start * spf:(start + self.clip_frames) * spf])[None]   # (1, T)
        return np.ascontiguousarray(v), np.ascontiguousarray(a)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        v, a = self.clip_arrays(*self.locate(index))
        return torch.from_numpy(v), torch.from_numpy(a)

    def clip_info(self, index: int) -> dict[str, Any]:
        """Where clip `index` comes from (for captions, debugging and evaluation)."""
        item_no, start, flip = self.locate(index)
        item = self.items[item_no]
        return {"item": item.id, "source": item.source, "start_frame": start, "flip": flip,
                "start_seconds": item.start_seconds + start / self.spec.fps, "meta": item.meta}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"] = OrderedDict()     # memory maps are reopened in each worker
        return state


__all__ = ["AVClipDataset", "START_MODES", "load_config_check", "CacheIndex"]
