"""Per-clip features on disk (the feature bank), their extraction in batches, spread over torchrun ranks.

A bank holds one feature of one clip source: <cache>/features/<feature>-<key>/part-<first>-<count>-<digest>.npz,
one file per finished batch, the digest a hash of the batch's clip indices, so runs of other sizes (other
batches) sharing a cache never overwrite each other's parts. Clips of a folder are keyed by their content instead
(<feature>-clips-<key>/part-<count>-<digest>.npz, each row named by the sha256 of its file, remembered per path,
inode, size, mtime and ctime in <cache>/clip-digests.json): a folder that was moved, copied, touched or grown reuses the
features of every clip it still holds, and two folders share the features of the files they have in common.
A feature that depends on the other clips of its batch (`FeatureFn.per_clip` false, e.g. training-mode
BatchNorm) stays keyed by the folder and the clip's index. Files are written atomically and validated on
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


DIGESTS_FILE = "clip-digests.json"      # in the cache root: sha256 of folder clips by (path, size, mtime)


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
    per_clip: bool = True       # a clip's value does not depend on the other clips of its batch


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
    One bank per (source, extractor): adding a metric computes only its feature. Rows are keyed by the clip's
    index in its source, or (`by_content`) by the content digest of its file."""

    def __init__(self, root: Path, key: str, dim: int | None = None, by_content: bool = False) -> None:
        self.root, self.dir = root, root / "features" / key
        self.dim, self.by_content = dim, by_content
        self._row = "clip" if by_content else "index"

    @classmethod
    def of(cls, root: Path, source, fn: FeatureFn) -> "FeatureBank":
        clips = getattr(source, "content_identity", None)       # how a folder's files are decoded, not which
        if clips is not None and fn.per_clip:
            return cls(root, f"{fn.name}-clips-{stable_hash({'clips': clips, 'feature': fn.identity})}", fn.dim,
                       by_content=True)
        return cls(root, f"{fn.name}-{stable_hash({'source': source.identity, 'feature': fn.identity})}", fn.dim)

    @classmethod
    def named(cls, root: Path, name: str) -> "FeatureBank":
        """The bank in <root>/features/<name> (a name from a result's `feature_banks`)."""
        return cls(root, name, by_content=name.split("-")[-2:-1] == ["clips"])

    def keys_for(self, source, indices: Sequence[int]) -> list:
        """The row keys of clips `indices` of `source`: the indices, or their files' content digests."""
        if self.by_content:
            return source.clip_digests(indices, self.root / DIGESTS_FILE)
        return [int(i) for i in indices]

    def _check(self, z: dict[str, np.ndarray]) -> str | None:
        if set(z) != {self._row, "features"}:
            return f"holds {sorted(z)}, expected {self._row} and features"
        idx, feats = z[self._row], z["features"]
        kind = np.str_ if self.by_content else np.integer
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, kind):
            return f"{self._row} has shape {idx.shape} and dtype {idx.dtype}"
        if feats.ndim != 2 or feats.shape[0] != idx.shape[0] or (self.dim and feats.shape[1] != self.dim):
            return f"features have shape {feats.shape} for {idx.shape[0]} clips of {self.dim}-d features"
        if not np.isfinite(feats).all():
            return "features hold NaN or infinity"
        return None

    def load(self) -> dict[int | str, np.ndarray]:
        done: dict[int | str, np.ndarray] = {}
        if not self.dir.is_dir():
            return done
        cast = str if self.by_content else int
        for part in sorted(self.dir.glob("part-*.npz")):
            z = load_npz(part, self._check)
            if z is not None:
                done.update({cast(k): f for k, f in zip(z[self._row], z["features"])})
        return done

    def save(self, keys: list, feats: np.ndarray) -> Path:
        """One part file holding rows `keys` (from `keys_for`), (len(keys), D) `feats`."""
        if self.by_content:
            digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
            path = self.dir / f"part-{len(keys):05d}-{digest}.npz"
            atomic_savez(path, clip=np.array(keys, dtype=np.str_), features=feats)
            return path
        digest = hashlib.sha256(np.asarray(keys, np.int64).tobytes()).hexdigest()[:16]
        path = self.dir / f"part-{keys[0]:08d}-{len(keys):05d}-{digest}.npz"
        atomic_savez(path, index=np.array(keys), features=feats)
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

    Batches are the clips that lack a feature, in order; with a feature that depends on its batch (e.g.
    training-mode BatchNorm) they are fixed by `indices` instead (a resumed run recomputes whole batches, so
    that feature sees the same batches). `should_stop` is asked before each
    work unit (a batch of clips, or a generated chunk); when it says so, EvalCancelled is raised with every
    finished batch saved. Under torchrun, missing batches are split round-robin over ranks and gathered to
    every rank (a stop hook must then answer the same on every rank, or the others wait at the gather).
    """
    from tqdm import tqdm

    rank, world = dist_context()
    indices = [int(i) for i in indices]
    done = {f.name: banks[f.name].load() for f in fns}
    key = {f.name: dict(zip(indices, banks[f.name].keys_for(source, indices))) for f in fns}   # index -> row key

    def lacks(f: FeatureFn, i: int) -> bool:
        return key[f.name][i] not in done[f.name]

    # batches of the clips that lack a feature; a feature that depends on its batch keeps the batches of `indices`
    pending = indices if not all(f.per_clip for f in fns) else [i for i in indices if any(lacks(f, i) for f in fns)]
    todo = [g for g in work_units(source, pending, batch_size) if any(lacks(f, i) for f in fns for i in g)]
    mine: list[tuple[list[int], dict[str, np.ndarray]]] = []
    my_groups = [g for k, g in enumerate(todo) if k % world == rank]
    bar = tqdm(total=sum(map(len, my_groups)), desc=desc, unit="clip", disable=rank != 0 or not todo)
    finished = len(indices) - sum(map(len, todo))
    if rank == 0 and finished:
        print(f"{desc}: {finished} of {len(indices)} clips from the cache", file=sys.stderr)
    try:
        for group in my_groups:
            check_stop(should_stop, f"during {desc} ({finished} of {len(indices)} clips done)")
            for idx, clips in source.batches(group, batch_size):
                lacking = [f for f in fns if any(lacks(f, i) for i in idx)]
                feats = {f.name: np.asarray(f.fn(clips), np.float32) for f in lacking}
                for name, values in feats.items():
                    banks[name].save([key[name][i] for i in idx], values)
                    done[name].update(zip((key[name][i] for i in idx), values))
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
                    if key[name][idx[0]] not in done[name]:
                        banks[name].save([key[name][i] for i in idx], values)
                        done[name].update(zip((key[name][i] for i in idx), values))
    out = {}
    for f in fns:
        have = done[f.name]             # what was on disk at the start, and what this call saved since
        absent = [i for i in indices if key[f.name][i] not in have]
        if absent:
            raise RuntimeError(f"{f.name} features missing for {len(absent)} clips after extraction "
                               f"(first: {absent[:3]}) in {banks[f.name].dir}")
        out[f.name] = np.stack([have[key[f.name][i]] for i in indices])
    return out


def work_units(source, indices: list[int], batch_size: int) -> list[list[int]]:
    """The source's own units (a generated source's chunks), else consecutive runs of batch_size indices."""
    if hasattr(source, "work_units"):
        return source.work_units(indices, batch_size)
    return [indices[s: s + batch_size] for s in range(0, len(indices), batch_size)]


def reference_stats(cache: Path, key: str, n: int, seed: int, run: int, name: str, x: np.ndarray):
    """Mean and covariance of the real features of one run, cached under `key` (the bank and which clips the
    run drew, see `run_key`), N, seed and run."""
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


def run_key(bank: FeatureBank, source, indices: Sequence[int]) -> str:
    """What the statistics of one run's clips are cached under: the bank's folder and a hash of the run's row keys
    (a content bank is shared by folders, so its name alone does not say which clips a run drew)."""
    return f"{bank.dir.name}-{stable_hash(bank.keys_for(source, indices))[:16]}"


__all__ = ["DIGESTS_FILE", "FeatureBank", "FeatureFn", "atomic_savez", "bind_extractor", "compute_features", "dist_context",
           "load_npz", "make_feature_fns", "reference_stats", "run_key", "stable_hash"]
