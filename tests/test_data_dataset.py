"""AVClipDataset: shapes, ranges, time alignment, determinism, flips."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mmdiff.config import PAPER, TINY
from mmdiff.data.cache import (CacheConfigMismatch, CacheError, CacheIndex, CacheItem, CacheSpec, save_index,
                               write_item)
from mmdiff.data.dataset import AVClipDataset

SPEC = CacheSpec(fps=10, video_size=(32, 32), audio_rate=8000)
SPF = 800
ITEM_FRAMES = {"item0": 40, "item1": 16, "item2": 10}     # item2 is shorter than a clip


def frame_code(item: int, k: int) -> np.ndarray:
    """(32, 32, 3) uint8: red = frame number, green = item number, blue = column (for flips)."""
    f = np.zeros((32, 32, 3), np.uint8)
    f[..., 0] = k
    f[..., 1] = 40 * item
    f[..., 2] = np.arange(32, dtype=np.uint8)[None] * 8
    return f


def audio_code(frames: int) -> np.ndarray:
    """(frames * SPF,) float: sample n encodes its frame n // SPF and its place inside the frame."""
    n = np.arange(frames * SPF)
    return (n // SPF) / 100 + 0.0025 + (n % SPF) / SPF * 0.005      # fraction in [0.25, 0.75) of 0.01


def decode_audio_frame(a: np.ndarray) -> np.ndarray:
    return np.floor(a * 100).astype(int)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    index = CacheIndex(spec=SPEC)
    for j, (name, n) in enumerate(ITEM_FRAMES.items()):
        video = np.stack([frame_code(j, k) for k in range(n)])
        item = CacheItem(id=name, frames=n, source=f"{name}.mp4", meta={"caption": name})
        index.items.append(write_item(root, SPEC, item, video, audio_code(n)))
    save_index(root, index)
    return root


def test_shapes_ranges_and_alignment(cache):
    ds = AVClipDataset(cache, model_config=TINY, seed=3, clips_per_item=25)
    assert len(ds) == 2 * 25 and ds.samples_per_clip == 12_800
    seen_starts = set()
    for i in range(len(ds)):
        video, audio = ds[i]
        assert video.shape == (16, 3, 32, 32) and audio.shape == (1, 12_800)
        assert video.dtype == torch.float32 and audio.dtype == torch.float32
        assert video.min() >= -1 and video.max() <= 1 and audio.abs().max() <= 1
        item_no, start, _ = ds.locate(i)
        seen_starts.add((item_no, start))
        frames = np.round((video[:, 0, 0, 0].numpy() + 1) * 127.5).astype(int)   # red channel code
        np.testing.assert_array_equal(frames, start + np.arange(16))
        assert np.round((video[0, 1, 0, 0].item() + 1) * 127.5) == 40 * item_no
        per_frame = decode_audio_frame(audio[0].numpy()).reshape(16, SPF)
        np.testing.assert_array_equal(per_frame, np.broadcast_to((start + np.arange(16))[:, None], (16, SPF)))
        first = audio[0, 0].item() - start / 100 - 0.0025                         # sample 0 of the clip
        assert first == pytest.approx(0.0, abs=1e-4)                               # is the frame's first
    assert {s for it, s in seen_starts if it == 1} == {0}                        # 16-frame item: one start
    assert len({s for it, s in seen_starts if it == 0}) > 8                      # 40 frames: 25 starts


def test_short_items_excluded_and_all_starts(cache):
    ds = AVClipDataset(cache, clip_frames=16, starts="all", stride=1)
    assert [i.id for i in ds.items] == ["item0", "item1"]
    assert len(ds) == (40 - 16 + 1) + 1
    assert [ds.locate(i)[:2] for i in range(len(ds))] == [(0, s) for s in range(25)] + [(1, 0)]
    ds4 = AVClipDataset(cache, clip_frames=16, starts="all", stride=4)
    assert [ds4.locate(i)[:2] for i in range(len(ds4))] == [(0, s) for s in range(0, 25, 4)] + [(1, 0)]
    with pytest.raises(ValueError, match="no item has 41 frames"):
        AVClipDataset(cache, clip_frames=41)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_determinism_given_seed_and_epoch(cache):
    a = AVClipDataset(cache, model_config=TINY, seed=7, clips_per_item=20)
    b = AVClipDataset(cache, model_config=TINY, seed=7, clips_per_item=20)
    c = AVClipDataset(cache, model_config=TINY, seed=8, clips_per_item=20)
    draws = lambda ds: [ds.locate(i) for i in range(len(ds))]            # noqa: E731
    assert draws(a) == draws(b)
    assert draws(a) != draws(c)
    for i in (0, 5, 39):
        torch.testing.assert_close(a[i], b[i], rtol=0, atol=0)
    epoch0 = draws(a)
    a.set_epoch(1)
    assert draws(a) != epoch0
    a.set_epoch(0)
    assert draws(a) == epoch0
    # the same clips whatever the worker count (each index seeds its own generator)
    def loader(n):
        return [x for batch in DataLoader(a, batch_size=8, num_workers=n) for x in batch[1]]
    single, multi = loader(0), loader(2)
    assert all(torch.equal(s, m) for s, m in zip(single, multi)) and len(single) == len(multi) == 40


def test_flip_probability_and_mirror(cache):
    ds = AVClipDataset(cache, model_config=TINY, seed=0, clips_per_item=2000)
    flips = np.array([ds.locate(i)[2] for i in range(len(ds))])
    assert abs(flips.mean() - 0.5) < 0.03                                # 4000 draws: sd 0.008
    v0, a0 = ds.clip_arrays(0, 5, flip=False)
    v1, a1 = ds.clip_arrays(0, 5, flip=True)
    np.testing.assert_array_equal(v1, v0[..., ::-1])                     # mirrored along W
    np.testing.assert_array_equal(a1, a0)                                # audio untouched
    assert v0[0, 2, 0, 0] < v0[0, 2, 0, -1]                              # blue ramps left to right
    i = int(np.flatnonzero(flips)[0])
    video, _ = ds[i]
    assert video[0, 2, 0, 0] > video[0, 2, 0, -1]                        # a flipped draw is mirrored
    never = AVClipDataset(cache, model_config=TINY, flip_prob=0.0, clips_per_item=100)
    assert not any(never.locate(i)[2] for i in range(len(never)))


def test_config_mismatch_and_info(cache):
    with pytest.raises(CacheConfigMismatch, match="video size 32x32 vs model 64x64"):
        AVClipDataset(cache, model_config=PAPER)
    ds = AVClipDataset(cache, model_config=TINY, seed=1)
    info = ds.clip_info(0)
    assert info["item"] == "item0" and info["meta"] == {"caption": "item0"}
    assert info["start_seconds"] == pytest.approx(info["start_frame"] / 10)


def test_index_and_arrays_must_agree(tmp_path):
    index = CacheIndex(spec=SPEC)
    item = write_item(tmp_path, SPEC, CacheItem(id="x", frames=0), np.zeros((16, 32, 32, 3), np.uint8),
                      np.zeros(16 * SPF))
    item.frames = 20                                   # an index that lies about the arrays
    index.items.append(item)
    save_index(tmp_path, index)
    ds = AVClipDataset(tmp_path, clip_frames=16)
    with pytest.raises(CacheError, match="item x has arrays"):
        ds[0]
