"""Per-clip features on disk (the feature bank), their extraction in batches, spread over torchrun ranks.

A bank holds one feature of one clip source: <cache>/features/<feature>-<key>/part-<first>-<count>-<digest>.npz,
one file per finished batch, the digest a hash of the batch's clip indices, so runs of other sizes (other
batches) sharing a cache never overwrite each other's parts. Files are written atomically and validated on
read; a damaged one is reported by name, removed, and its clips computed again. Reference statistics of the
real features (per run) are cached beside the banks the same way.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from eval.config import StopFn, check_stop
from mmdiff.atomic import atomic_path
from mmdiff.data.av_io import AVClip


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path, suffix=".npz") as tmp:          # savez appends .npz to other names
        np.savez(tmp, **arrays)


def load_npz(path: Path, checks: Callable[[dict[str, np.ndarray]], str | None]) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file, or None (with a message naming it, and the file removed) when it is damaged:
    unreadable, truncated, or failing `checks` (which returns what is wrong, or None)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        problem = checks(arrays)
    except FileNotFoundError:              # removed by a concurrent run between listing and reading
        return None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        problem = f"{type(e).__name__}: {e}"
    if problem is None:
        return arrays
    print(f"warning: damaged cache file {path} ({problem}); removing it, its values are computed again",
          file=sys.stderr)
    path.unlink(missing_ok=True)
    return None


@dataclass
class FeatureFn:
    """One per-clip feature: `fn(clips) -> (B, D)` plus what identifies it in cache keys."""

    name: str
    dim: int
    fn: Callable[[list[AVClip]], np.ndarray]
    identity: dict = field(default_factory=dict)


def make_feature_fns(cfg) -> list[FeatureFn]:
    from eval.registry import FEATURES

    return [FEATURES[name].build(cfg) for name in cfg.features]


def bind_extractor(ex) -> Callable[[list[AVClip]], np.ndarray]:
    if ex.input_kind == "video":
        return lambda clips: ex(np.stack([c.video for c in clips]))
    return lambda clips: _audio_features(ex, clips)


def _audio_features(ex, clips: list[AVClip]) -> np.ndarray:
    """One extractor call per sample rate in the batch, clips zero-padded to the longest; for an
    extractor whose features change with appended zeros (CLAP repeat-pads short clips), one call
    per (rate, length), so a clip's features never depend on the other clips of its batch."""
    by_length = not getattr(ex, "zero_pad_invariant", True)
    keys = {(c.audio_rate, c.audio.shape[0] if by_length else 0) for c in clips}
    out = []
    for rate, length in sorted(keys):
        group = [c for c in clips if c.audio_rate == rate and (not by_length or c.audio.shape[0] == length)]
        n = max(c.audio.shape[0] for c in group)
        wav = np.stack([np.pad(c.audio, (0, n - c.audio.shape[0])) for c in group])   # (B, T)
        out.append((group, ex(wav, sample_rate=rate)))
    feats = {id(c): f for group, fs in out for c, f in zip(group, fs)}
    return np.stack([feats[id(c)] for c in clips])


class FeatureBank:
    """One feature's per-clip values on disk, one part file per finished batch (see the module doc).
    One bank per (source, extractor): adding a metric computes only its feature."""

    def __init__(self, root: Path, key: str, dim: int | None = None) -> None:
        self.dir = root / "features" / key
        self.dim = dim

    @classmethod
    def of(cls, root: Path, source_identity: dict, fn: FeatureFn) -> "FeatureBank":
        return cls(root, f"{fn.name}-{stable_hash({'source': source_identity, 'feature': fn.identity})}", fn.dim)

    def _check(self, z: dict[str, np.ndarray]) -> str | None:
        if set(z) != {"index", "features"}:
            return f"holds {sorted(z)}, expected index and features"
        idx, feats = z["index"], z["features"]
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            return f"index has shape {idx.shape} and dtype {idx.dtype}"
        if feats.ndim != 2 or feats.shape[0] != idx.shape[0] or (self.dim and feats.shape[1] != self.dim):
            return f"features have shape {feats.shape} for {idx.shape[0]} clips of {self.dim}-d features"
        if not np.isfinite(feats).all():
            return "features hold NaN or infinity"
        return None

    def load(self) -> dict[int, np.ndarray]:
        done: dict[int, np.ndarray] = {}
        if not self.dir.is_dir():
            return done
        for part in sorted(self.dir.glob("part-*.npz")):
            z = load_npz(part, self._check)
            if z is not None:
                done.update({int(i): f for i, f in zip(z["index"], z["features"])})
        return done

    def save(self, idx: list[int], feats: np.ndarray) -> Path:
        digest = hashlib.sha256(np.asarray(idx, np.int64).tobytes()).hexdigest()[:16]
        path = self.dir / f"part-{idx[0]:08d}-{len(idx):05d}-{digest}.npz"
        atomic_savez(path, index=np.array(idx), features=feats)
        return path


def dist_context() -> tuple[int, int]:
    """(rank, world size) under torchrun (gloo process group initialised on first use), else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), world


def compute_features(source, indices: Sequence[int], fns: list[FeatureFn], banks: dict[str, FeatureBank],
                     batch_size: int, desc: str, should_stop: StopFn | None = None) -> dict[str, np.ndarray]:
    """Features (len(indices), D) for each fn, computing only what its bank lacks; streams in batches
    (a clip missing from any bank is read or generated once, and only the lacking features are computed).

    Batches are fixed by `indices` (a resumed run recomputes whole batches, so a feature that depends on
    its batch, e.g. training-mode BatchNorm, sees the same batches). `should_stop` is asked before each
    work unit (a batch of clips, or a generated chunk); when it says so, EvalCancelled is raised with every
    finished batch saved. Under torchrun, missing batches are split round-robin over ranks and gathered to
    every rank (a stop hook must then answer the same on every rank, or the others wait at the gather).
    """
    from tqdm import tqdm

    rank, world = dist_context()
    done = {f.name: banks[f.name].load() for f in fns}
    todo = [g for g in work_units(source, [int(i) for i in indices], batch_size)
            if any(i not in done[f.name] for f in fns for i in g)]
    mine: list[tuple[list[int], dict[str, np.ndarray]]] = []
    my_groups = [g for k, g in enumerate(todo) if k % world == rank]
    bar = tqdm(total=sum(map(len, my_groups)), desc=desc, unit="clip", disable=rank != 0 or not todo)
    finished = len(indices) - sum(map(len, todo))
    try:
        for group in my_groups:
            check_stop(should_stop, f"during {desc} ({finished} of {len(indices)} clips done)")
            for idx, clips in source.batches(group, batch_size):
                lacking = [f for f in fns if any(i not in done[f.name] for i in idx)]
                feats = {f.name: np.asarray(f.fn(clips), np.float32) for f in lacking}
                for name, values in feats.items():
                    banks[name].save(idx, values)
                mine.append((idx, feats))
                finished += len(idx)
                bar.update(len(idx))
    finally:
        bar.close()
    if world > 1:
        import torch.distributed as dist

        everything: list = [None] * world
        dist.all_gather_object(everything, mine)
        for part in everything:
            for idx, feats in part:
                for name, values in feats.items():
                    if idx[0] not in done[name]:
                        banks[name].save(idx, values)
    out = {}
    for f in fns:
        have = banks[f.name].load()
        absent = [i for i in indices if int(i) not in have]
        if absent:
            raise RuntimeError(f"{f.name} features missing for {len(absent)} clips after extraction "
                               f"(first: {absent[:3]}) in {banks[f.name].dir}")
        out[f.name] = np.stack([have[int(i)] for i in indices])
    return out


def work_units(source, indices: list[int], batch_size: int) -> list[list[int]]:
    """The source's own units (a generated source's chunks), else consecutive runs of batch_size indices."""
    if hasattr(source, "work_units"):
        return source.work_units(indices, batch_size)
    return [indices[s: s + batch_size] for s in range(0, len(indices), batch_size)]


def reference_stats(cache: Path, key: str, n: int, seed: int, run: int, name: str, x: np.ndarray):
    """Mean and covariance of the real features of one run, cached under (bank key, N, seed, run)."""
    from eval import metrics as M

    d = x.shape[1]
    path = cache / "stats" / f"{key}-{name}-n{n}-s{seed}-r{run}.npz"

    def check(z: dict) -> str | None:
        ok = set(z) == {"mu", "sigma"} and z["mu"].shape == (d,) and z["sigma"].shape == (d, d)
        return None if ok and np.isfinite(z["sigma"]).all() else f"expected mu ({d},) and sigma ({d}, {d})"

    if path.is_file() and (z := load_npz(path, check)) is not None:
        return z["mu"], z["sigma"]
    mu, sigma = M.gaussian_stats(x)
    atomic_savez(path, mu=mu, sigma=sigma)
    return mu, sigma


__all__ = ["FeatureBank", "FeatureFn", "atomic_savez", "bind_extractor", "compute_features", "dist_context",
           "load_npz", "make_feature_fns", "reference_stats", "stable_hash"]
