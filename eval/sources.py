"""Clip sources: a folder of files, or the samples of a checkpoint, and the seeded draw of each run's clips.

A source has `identity` (everything that changes its clips: the cache key), `pool_size`, `describe()`,
`work_units(indices, batch_size)` (the batches features are computed in) and `batches(indices, batch_size)`
yielding (indices, [AVClip]).
"""
from __future__ import annotations

import json
import sys

from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from eval.checks import check_audio_rates, check_frame_rates
from eval.clips import ClipError, list_clips, read_clip, resize_frames
from eval.config import ProtocolError
from mmdiff.data.av_io import AVClip

# How folder clips are decoded, in their features' cache key. 3: through mmdiff.data.av_io.read_av (audio on the
# video's clock, exactly the samples the frames span). 2: audio down-mixed by the channel mean (1 used FFmpeg's
# mono layout, (L + R) / sqrt 2, 3 dB louder on stereo files) and frames resized by centre crop + antialiased
# bicubic (1: short side bilinear, then crop).
DECODE_VERSION = 3


def file_digests(paths: Sequence[Path], memo: Path) -> list[str]:
    """The hex sha256 of each file's bytes. Digests are remembered in the JSON file `memo` by resolved path, inode,
    size, mtime and ctime (which no user tool sets: an edit that restores the mtime is still seen), so a file is
    read again only when one of them changed; an entry that is not a well-formed digest is recomputed. The memo
    is written atomically; two runs sharing it can only lose each other's new entries (then computed again),
    never corrupt it. A memo that cannot be written (read-only cache) is skipped with a warning."""
    from mmdiff.atomic import file_sha256, write_text

    try:
        known = json.loads(memo.read_text())
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError, RecursionError):
        known = {}
    out, added = [], False
    for path in paths:
        name, st = str(Path(path).resolve()), Path(path).stat()
        stamp = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        entry = known.get(name)
        if not (isinstance(entry, list) and len(entry) == 5 and entry[:4] == stamp and _is_digest(entry[4])):
            entry = known[name] = [*stamp, file_sha256(path)]
            added = True
        out.append(entry[4])
    if added:
        try:
            write_text(memo, json.dumps(known, sort_keys=True))
        except OSError as e:
            print(f"warning: cannot remember file digests in {memo} ({e.strerror or e}); they are computed again "
                  "next time", file=sys.stderr)
    return out


def _is_digest(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def run_indices(pool_size: int, n: int, seed: int, run: int, role: int) -> np.ndarray:
    """Sorted draw of n distinct clip indices for (seed, run, role); role 0 = real, 1 = fake."""
    if n > pool_size:
        raise ProtocolError(f"need {n} clips but only {pool_size} are available")
    if n == pool_size:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, run, role]).choice(pool_size, n, replace=False))


class FolderSource:
    """Clips from a folder of video files (first `frames` frames, resized to `video_size` by `resize`)."""

    def __init__(self, folder: str | Path, frames: int, video_size: int, with_audio: bool, role: str,
                 resize: str = "crop") -> None:
        self.folder, self.frames, self.video_size, self.with_audio, self.role = Path(folder), frames, video_size, with_audio, role
        self.resize = resize
        self.expected_fps: float | None = None      # set by evaluate: every clip must have this frame rate
        self.damaged: set[Path] = set()             # files already reported as damaged (runs re-read clips)
        self._digests: dict[int, str] = {}          # clip index -> sha256 of its file, once per source
        try:
            self.files = list_clips(self.folder)
        except ClipError as e:
            raise ProtocolError(f"{role} clips: {e}") from e

    @property
    def pool_size(self) -> int:
        return len(self.files)

    @property
    def identity(self) -> dict:
        from eval.bank import stable_hash

        files = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in self.files]
        return {"kind": "folder", "folder": str(self.folder.resolve()), "files": stable_hash(files),
                "count": len(files), **self.content_identity}

    @property
    def content_identity(self) -> dict:
        """How a file becomes a clip (not which files): with a file's bytes, this fixes its features."""
        ident = {"frames": self.frames, "video_size": self.video_size, "decode": DECODE_VERSION}
        return {**ident, "resize": self.resize} if self.resize != "crop" else ident

    def clip_digests(self, indices: Sequence[int], memo: Path) -> list[str]:
        """The sha256 of the files of clips `indices` (see `file_digests`), looked up once per source: every bank
        and every run's statistics key ask again for the same clips."""
        missing = sorted({int(i) for i in indices} - set(self._digests))
        if missing:
            self._digests.update(zip(missing, file_digests([self.files[i] for i in missing], memo)))
        return [self._digests[int(i)] for i in indices]

    def describe(self) -> str:
        return str(self.folder)

    def read(self, i: int) -> AVClip:
        try:
            clip = read_clip(self.files[i], self.frames, with_audio=self.with_audio)
        except ClipError as e:
            raise ProtocolError(f"{self.role} clips: {e}") from e
        if clip.dropped and self.files[i] not in self.damaged:
            self.damaged.add(self.files[i])
            print(f"note: {self.files[i]} is damaged: {clip.dropped.describe()}; decoded past it as ffmpeg does",
                  file=sys.stderr)
        if self.expected_fps:
            check_frame_rates(self.expected_fps, clip.fps, str(self.files[i]))
        if self.with_audio and clip.audio is None:
            raise ProtocolError(f"{self.files[i]} has no audio stream, but the audio metrics (FAD, AV-Align) "
                                "need it; evaluate video only with --metric fvd,kvd")
        if self.with_audio and clip.audio.size == 0:
            raise ProtocolError(f"{self.files[i]}: its audio stream decodes to no samples")
        if self.video_size:
            clip = replace(clip, video=resize_frames(clip.video, self.video_size, self.resize))
        return clip

    def preflight(self, indices: Sequence[int]) -> None:
        """Before any feature is extracted, every clip the runs will read is checked from its headers (a few ms
        each), and one ProtocolError lists every unusable file (unreadable, no video, no audio where the metrics
        need it, too few frames), instead of one per rerun. A clip whose header looks too short is read to confirm
        (a damaged header can understate the length); problems only decoding finds still stop the read."""
        from mmdiff.data.av_io import MediaError, probe

        problems = []
        for i in sorted({int(i) for i in indices}):
            path = self.files[i]
            try:
                info = probe(path)
            except (MediaError, OSError) as e:
                problems.append(f"cannot read {path.name} ({e})")
                continue
            if not info.has_video:
                problems.append(f"{path.name} has no video stream")
            elif self.with_audio and not info.has_audio:
                problems.append(f"{path.name} has no audio stream")
            elif info.fps > 0 and 0 < info.duration * info.fps < self.frames - 1:
                try:
                    self.read(i)
                except ProtocolError as e:
                    problems.append(str(e).removeprefix(f"{self.role} clips: "))
        if problems:
            listed = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            audio = " (audio metrics need sound: evaluate video only with --metric fvd,kvd)" if any(
                "no audio stream" in p for p in problems) else ""
            raise ProtocolError(f"{self.role} clips: {len(problems)} of the files these runs use cannot be used: "
                                f"{listed}{audio}; remove or replace them in {self.folder}")

    def batches(self, indices: Sequence[int], batch_size: int) -> Iterator[tuple[list[int], list[AVClip]]]:
        for s in range(0, len(indices), batch_size):
            idx = [int(i) for i in indices[s: s + batch_size]]
            yield idx, [self.read(i) for i in idx]


class GeneratedSource:
    """Samples of a checkpoint, generated in chunks of `chunk` samples, each chunk seeded on its own.

    Chunk j holds samples [j*chunk, (j+1)*chunk) and is generated whole (a last chunk past `total` too) with
    seed (seed, j) derived, so any chunk can be (re)made alone and sample i never depends on `total`:
    resuming, sharding and runs of other sizes never regenerate or disagree on finished samples.
    """

    def __init__(self, ckpt: str | Path, total: int, seed: int, chunk: int, device: str | None,
                 sampler: str, steps: int, video_size: int,
                 generate: Callable[..., Iterator] | None = None, upscale: str | Path | None = None,
                 frames: int | None = None, options=None, resize: str = "crop") -> None:
        """:param sampler, steps: the sampler settings, or
        :param options: all of them (`mmdiff.generate.SamplerOptions`; then `sampler` and `steps` are ignored).
        :param upscale: a super-resolution checkpoint: frames go through the SR stage (DDIM 25) before
            features (the paper evaluated the 64x64 output; this evaluates the upscaled one).
        :param frames: keep the first `frames` frames of each sample and the audio of that span, like the
            real clips (None: all); a model that makes fewer is a ProtocolError."""
        from mmdiff.generate import SamplerOptions

        self.ckpt, self.total, self.seed, self.chunk, self.frames = Path(ckpt), total, seed, chunk, frames
        self.expected_fps: float | None = None
        self.device, self.video_size, self.resize = device, video_size, resize
        try:
            self.options = options if options is not None else SamplerOptions(sampler, steps=steps)
        except ValueError as e:
            raise ProtocolError(f"sampler settings: {e}") from e
        self.upscale = Path(upscale) if upscale else None
        for path in (self.ckpt, self.upscale):
            if path is not None and not path.is_file():
                raise ProtocolError(f"checkpoint {path} does not exist")
        self._generate = generate or load_generate_clips()
        self._ckpt_sha: str | None = None
        self.expected_rate: int | None = None

    @property
    def sampler(self) -> str:
        return self.options.sampler

    @property
    def steps(self) -> int:
        return self.options.steps

    @property
    def pool_size(self) -> int:
        return self.total

    @property
    def identity(self) -> dict:
        from mmdiff.generate import INFERENCE_VERSION

        if self._ckpt_sha is None:
            from mmdiff.atomic import file_sha256

            self._ckpt_sha = file_sha256(self.ckpt)
            self._sr_sha = file_sha256(self.upscale) if self.upscale else None
        # every sampler option and the code's inference version: a cache of old samples is not reused after
        # either changes
        ident = {"kind": "generated", "ckpt_sha256": self._ckpt_sha, "seed": self.seed, "chunk": self.chunk,
                 "video_size": self.video_size, "frames": self.frames, "inference_version": INFERENCE_VERSION,
                 **asdict(self.options)}
        ident = {**ident, "resize": self.resize} if self.resize != "crop" else ident
        return {**ident, "upscale_sha256": self._sr_sha} if self.upscale else ident

    def describe(self) -> str:
        sr = f", upscaled by {self.upscale.name}" if self.upscale else ""
        o = self.options
        eta = f", eta {o.eta:g}" if o.sampler == "ddim" else ""
        return f"{self.ckpt} ({o.sampler}, {o.steps} steps{eta}{sr})"

    def _generate_kwargs(self) -> dict:
        if self.upscale is None:
            return {}
        from mmdiff.sample import UpscaleOptions

        return {"upscale": UpscaleOptions(str(self.upscale))}

    def chunk_seed(self, j: int) -> int:
        return int(np.random.default_rng([self.seed, j]).integers(0, 2**31 - 1))

    def work_units(self, indices: list[int], batch_size: int) -> list[list[int]]:
        """One unit per generated chunk."""
        by_chunk: dict[int, list[int]] = {}
        for i in indices:
            by_chunk.setdefault(i // self.chunk, []).append(i)
        return [by_chunk[j] for j in sorted(by_chunk)]

    def batches(self, indices: Sequence[int], batch_size: int) -> Iterator[tuple[list[int], list[AVClip]]]:
        wanted = set(int(i) for i in indices)
        for j in sorted(set(i // self.chunk for i in wanted)):
            # always the whole chunk, also past `total`: a sample then does not depend on the total asked for
            # (the batch size changes every sampler's noise draws), so caches of runs of other sizes agree
            lo = j * self.chunk
            clips: list[AVClip] = []
            for video, audio, rate in self._generate(self.ckpt, num=self.chunk, seed=self.chunk_seed(j),
                                                     batch_size=self.chunk, device=self.device,
                                                     sampler=self.options.sampler, steps=self.options.steps,
                                                     options=self.options, **self._generate_kwargs()):
                video, audio = np.asarray(video), np.asarray(audio, np.float32)   # (B, F, H, W, 3), (B, T)
                if self.expected_rate and int(rate) != self.expected_rate:
                    check_audio_rates({0: self.expected_rate}, {0: int(rate)}, allow=False)
                fps = video.shape[1] / (audio.shape[1] / rate)       # both streams cover the same time
                if self.expected_fps:
                    check_frame_rates(self.expected_fps, fps, f"samples of {self.ckpt}")
                video, audio = self.cut(video, audio, fps, int(rate))
                for v, a in zip(video, audio):
                    v = resize_frames(v, self.video_size, self.resize) if self.video_size else v
                    clips.append(AVClip(v, a, fps, int(rate), f"sample-{lo + len(clips)}"))
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


def check_checkpoint(path: str | Path, what: str = "--ckpt") -> None:
    """Build the model a checkpoint describes and load its weights (weights_only) on the CPU now, so a truncated,
    foreign or super-resolution file is reported before minutes of real features: ProtocolError naming it."""
    from mmdiff.checkpoint import CheckpointError, load_model

    path = Path(path)
    if not path.is_file():
        raise ProtocolError(f"{what}: checkpoint {path} does not exist")
    try:
        load_model(path, "cpu")
    except CheckpointError as e:
        raise ProtocolError(f"{what}: {e}") from e


__all__ = ["DECODE_VERSION", "FolderSource", "GeneratedSource", "check_checkpoint", "file_digests",
           "load_generate_clips", "run_indices"]
