"""Decode a folder of raw videos once into a training-ready cache (see mmdiff/data/cache.py).

    python -m mmdiff.data.prepare --src RAW_DIR --out DATA_DIR --preset tiny \
        [--segment-seconds 34 --skip-head 10] [--resize crop|letterbox] [--workers 2]

Each source is decoded at the cache's fps/size/rate, optionally cut into fixed-length segments
(skip the first --skip-head seconds, then consecutive --segment-seconds pieces, the remainder
dropped, as for the concert and game-clip datasets of Paredes La Torre), and each piece stored as
one item. The index is rewritten atomically every few seconds and on exit, so an interrupted run
resumes where it stopped: a source already in the index (same size and mtime) is not decoded again.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterable, Iterator

from tqdm import tqdm

from mmdiff.cliargs import positive_float, positive_int
from mmdiff.config import PRESETS
from mmdiff.data import av_io
from mmdiff.data.cache import (CacheError, CacheIndex, CacheItem, CacheSpec, INDEX_NAME, load_index,
                               remove_orphans, save_index, write_item)
from mmdiff.outdir import FolderLock, contents


@dataclass(frozen=True)
class PrepareSettings:
    """How sources are cut into items (stored in the index; a resume must use the same)."""

    segment_seconds: float | None = None    # None: one item per source
    skip_head: float = 0.0                  # seconds dropped from the start of each source
    min_seconds: float = 1.6                # shorter items are not kept

    def validate(self, fps: float) -> None:
        """ValueError for settings no source could satisfy (checked before anything is written)."""
        for flag, value in (("--min-seconds", self.min_seconds), ("--skip-head", self.skip_head),
                            ("--segment-seconds", self.segment_seconds), ("--fps", fps)):
            if value is not None and not math.isfinite(value):
                unit = "frames per second" if flag == "--fps" else "seconds"
                raise ValueError(f"{flag} must be a finite number of {unit}, got {value:g}")
        if not self.min_seconds > 0:
            raise ValueError(f"--min-seconds must be > 0, got {self.min_seconds:g}")
        if not self.skip_head >= 0:
            raise ValueError(f"--skip-head must be >= 0, got {self.skip_head:g}")
        if self.segment_seconds is not None:
            if not self.segment_seconds > 0:
                raise ValueError(f"--segment-seconds must be > 0, got {self.segment_seconds:g}")
            if round(self.segment_seconds * fps) < max(1, round(self.min_seconds * fps)):
                raise ValueError(f"--segment-seconds {self.segment_seconds:g} is shorter than "
                                 f"--min-seconds {self.min_seconds:g}")

    def to_dict(self) -> dict[str, Any]:
        return {"segment_seconds": self.segment_seconds, "skip_head": self.skip_head,
                "min_seconds": self.min_seconds}


@dataclass
class SourceResult:
    """What happened to one source file (returned from a worker)."""

    rel: str
    status: str                              # "kept" | "skipped"
    reason: str = ""                         # short category for skipped: see SKIP_REASONS
    detail: str = ""
    damage: str = ""                         # what decoding skipped in a damaged file ("" when nothing)
    items: list[CacheItem] = field(default_factory=list)
    size: int = 0
    mtime_ns: int = 0

    def record(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "detail": self.detail, "damage": self.damage,
                "items": [i.id for i in self.items], "size": self.size, "mtime_ns": self.mtime_ns}


SKIP_REASONS = {
    av_io.NoAudioError: "no audio track",
    av_io.NoVideoError: "no video stream",
    av_io.AVDecodeError: "unreadable",
    av_io.EmptyMediaError: "empty",
}


# ---------------------------------------------------------------------------------------------
# pure helpers
def find_videos(src: str | os.PathLike) -> list[Path]:
    """Video files under src (recursive, by extension, hidden files and folders skipped), sorted."""
    return av_io.list_videos(src, recursive=True)


def item_id(rel: str, segment: int) -> str:
    """Stable, filesystem-safe id: readable stem + hash of the relative path + segment number."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(rel).stem)[:40] or "video"
    digest = hashlib.sha1(rel.encode()).hexdigest()[:10]
    return f"{stem}-{digest}-{segment:04d}"


def segment_frames(num_frames: int, fps: float, settings: PrepareSettings) -> list[tuple[int, int]]:
    """(start frame, frame count) of each item cut from a source of num_frames frames."""
    head = round(settings.skip_head * fps)
    min_frames = max(1, round(settings.min_seconds * fps))
    if settings.segment_seconds is None:
        n = num_frames - head
        return [(head, n)] if n >= min_frames else []
    seg = round(settings.segment_seconds * fps)
    if seg < min_frames:
        raise ValueError(f"--segment-seconds {settings.segment_seconds} is shorter than "
                         f"--min-seconds {settings.min_seconds}")
    return [(s, seg) for s in range(head, num_frames - seg + 1, seg)]


def file_signature(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


# ---------------------------------------------------------------------------------------------
# per-source work (runs in worker processes)
def process_source(path: Path, rel: str, out: Path, spec: CacheSpec,
                   settings: PrepareSettings) -> SourceResult:
    """Decode one source, write its items' arrays; never raises for a bad source file."""
    size, mtime = file_signature(path)
    result = SourceResult(rel=rel, status="skipped", size=size, mtime_ns=mtime)
    if size == 0:
        result.reason, result.detail = "empty", "0 bytes"
        return result
    try:
        clip = av_io.read_av(path, spec.fps, spec.video_size, spec.audio_rate, spec.resize)
    except av_io.MediaError as e:
        result.reason, result.detail = SKIP_REASONS.get(type(e), "unreadable"), str(e)
        return result
    result.damage = clip.dropped.describe()
    pieces = segment_frames(clip.num_frames, spec.fps, settings)
    if not pieces:
        result.reason = "too short"
        result.detail = (f"{rel}: {clip.duration:.2f} s; need {settings.skip_head:g} s skipped head + "
                         f"{settings.segment_seconds or settings.min_seconds:g} s")
        return result
    spf = spec.samples_per_frame
    for k, (s, n) in enumerate(pieces):
        item = CacheItem(id=item_id(rel, k), frames=n, source=rel, start_seconds=s / spec.fps)
        write_item(out, spec, item, clip.video[s:s + n], clip.audio[s * spf:(s + n) * spf])
        result.items.append(item)
    result.status = "kept"
    return result


def _process_job(job: tuple) -> SourceResult:
    return process_source(*job)


# ---------------------------------------------------------------------------------------------
def open_or_create_index(out: Path, spec: CacheSpec, settings: PrepareSettings) -> CacheIndex:
    """Load an existing index made with the same spec/settings, or start a new one."""
    if not (out / INDEX_NAME).exists():
        return CacheIndex(spec=spec, settings=settings.to_dict())
    index = load_index(out)
    if index.spec != spec or index.settings != settings.to_dict():
        raise CacheError(
            f"{out} holds a cache made with spec {index.spec.to_dict()} and settings {index.settings}, "
            f"but this run asks for {spec.to_dict()} and {settings.to_dict()}; resume with the same "
            "flags or choose a new --out")
    return index


def pending_sources(index: CacheIndex, src: Path, files: list[Path]) -> list[tuple[Path, str]]:
    """(path, rel) of sources not yet in the index or changed since (size or mtime differ)."""
    todo = []
    for path in files:
        rel = path.relative_to(src).as_posix()
        rec = index.sources.get(rel)
        if rec is None or (rec["size"], rec["mtime_ns"]) != file_signature(path):
            todo.append((path, rel))
    return todo


def gone_sources(index: CacheIndex, src: Path, files: list[Path], out: Path, owned: bool = False) -> list[str]:
    """Sources of the index that are no longer under `src` (deleted since, say), to be dropped with their items, so
    the cache holds exactly what --src holds. When most of them are gone, --src is another folder than the cache was
    made from: CacheError instead of replacing (or mixing in) the whole cache."""
    present = {p.relative_to(src).as_posix() for p in files}
    gone = [rel for rel in index.sources if rel not in present]
    if gone and 2 * len(gone) > len(index.sources) and not owned:
        raise CacheError(f"--out {out} holds a cache of {len(index.sources)} sources, and {len(gone)} of them (e.g. "
                         f"{gone[0]}) are not under --src {src}: was it made from another folder? Resume with the "
                         "--src it was made from, or give a new --out")
    if gone:
        print(f"note: {len(gone)} source(s) are no longer under --src {src} ({', '.join(gone[:3])}"
              f"{' ...' if len(gone) > 3 else ''}); their items are dropped from the cache", file=sys.stderr)
    return gone


def drop_source(index: CacheIndex, rel: str) -> None:
    """Forget a source and its items in the index (files are left for remove_orphans)."""
    index.sources.pop(rel, None)
    index.items = [i for i in index.items if i.source != rel]


def apply_result(index: CacheIndex, result: SourceResult) -> None:
    """Record one source's outcome in the index."""
    drop_source(index, result.rel)
    index.items += result.items
    index.sources[result.rel] = result.record()


def _run_jobs(jobs: list[tuple], workers: int) -> Iterator[SourceResult]:
    if workers <= 1:
        yield from map(_process_job, jobs)
        return
    with get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_process_job, jobs)


def prepare(src: str | os.PathLike, out: str | os.PathLike, spec: CacheSpec,
            settings: PrepareSettings = PrepareSettings(), workers: int = 1,
            progress: bool = True, save_every_s: float = 2.0, owned: bool = False) -> CacheIndex:
    """Build or resume the cache at `out` from the videos under `src`; returns the final index.

    :param owned: `out` belongs to `src` (the cache `mmdiff.train --data RAW` makes beside RAW, named after it), so
        sources gone from `src` are dropped however many, never taken for another folder's cache.

    The index is rewritten atomically at most every `save_every_s` seconds and when the run ends or
    is interrupted; item files written after the last save are orphans that the next run deletes
    and redoes.
    """
    src, out = Path(src), Path(out)
    settings.validate(spec.fps)
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if not src.is_dir():
        raise FileNotFoundError(f"--src {src} is not a folder")
    if out.exists() and not out.is_dir():
        raise CacheError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    with FolderLock(out):                 # one prepare at a time per cache (a killed run's lock is stale)
        _check_out(out)
        return _prepare(src, out, spec, settings, workers, progress, save_every_s, owned)


def _check_out(out: Path) -> None:
    """`out` must hold a cache to resume or nothing (a cache is never mixed into other files)."""
    if not (out / INDEX_NAME).exists() and contents(out):
        names = ", ".join(p.name for p in contents(out)[:3])
        raise CacheError(f"--out {out} holds other files ({names}) and no {INDEX_NAME}; give a new or empty "
                         "folder, or the folder of the cache to resume")


def _prepare(src: Path, out: Path, spec: CacheSpec, settings: PrepareSettings, workers: int, progress: bool,
             save_every_s: float, owned: bool = False) -> CacheIndex:
    index = open_or_create_index(out, spec, settings)
    files = find_videos(src)
    for rel in gone_sources(index, src, files, out, owned):  # deleted from --src since: their items go too
        drop_source(index, rel)
    todo = pending_sources(index, src, files)
    for _, rel in todo:                 # changed sources: forget them before rewriting their items
        drop_source(index, rel)
    save_index(out, index)
    remove_orphans(out, index)
    jobs = [(p, rel, out, spec, settings) for p, rel in todo]
    bar = tqdm(total=len(files), initial=len(files) - len(jobs), desc="prepare", unit="video",
               disable=not progress)
    last_save = time.monotonic()
    try:
        for result in _run_jobs(jobs, workers):
            apply_result(index, result)
            bar.update(1)
            if time.monotonic() - last_save > save_every_s:
                save_index(out, index)
                last_save = time.monotonic()
    finally:                             # also on Ctrl-C: keep every source finished so far
        save_index(out, index)
        bar.close()
    return index


def _detail_text(detail: str, rel: str) -> str:
    """A skip detail without the file path it starts with (the line names the file already)."""
    head, sep, rest = (detail or "").partition(": ")
    return rest if sep and (head == rel or head.endswith("/" + rel) or Path(head).name == Path(rel).name) else detail


def summarize(index: CacheIndex) -> str:
    """Human-readable counts of kept items/seconds and skipped sources by reason."""
    spec = index.spec
    kept = [r for r in index.sources.values() if r["status"] == "kept"]
    skipped = {rel: r for rel, r in index.sources.items() if r["status"] == "skipped"}
    seconds = sum(i.frames for i in index.items) / spec.fps
    lines = [f"kept {len(kept)} sources -> {len(index.items)} items, {seconds / 3600:.2f} h "
             f"({seconds:.1f} s) at {spec.fps:g} fps, {spec.video_size[0]}x{spec.video_size[1]}, "
             f"{spec.audio_rate} Hz"]
    for reason, n in sorted(Counter(r["reason"] for r in skipped.values()).items()):
        lines.append(f"skipped {n} sources: {reason}")
    for rel, r in list(skipped.items())[:20]:
        detail = _detail_text(r["detail"], rel)
        lines.append(f"  {rel}: {r['reason']}" + (f" ({detail})" if detail and detail != r["reason"] else ""))
    if len(skipped) > 20:
        lines.append(f"  ... and {len(skipped) - 20} more (see sources in {INDEX_NAME})")
    damaged = {rel: r["damage"] for rel, r in index.sources.items() if r["status"] == "kept" and r.get("damage")}
    if damaged:
        lines.append(f"decoded past damage in {len(damaged)} kept sources (as ffmpeg does):")
        lines += [f"  {rel}: {text}" for rel, text in list(damaged.items())[:20]]
        if len(damaged) > 20:
            lines.append(f"  ... and {len(damaged) - 20} more (see sources in {INDEX_NAME})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
def add_spec_flags(p: argparse.ArgumentParser, default_preset: str) -> None:
    """--preset and its per-field overrides (shared with mmdiff.data.synthetic)."""
    p.add_argument("--preset", choices=sorted(PRESETS), default=default_preset,
                   help=f"model preset whose fps/size/audio rate to use (default {default_preset})")
    p.add_argument("--fps", type=positive_float, default=None, help="frames per second (overrides the preset)")
    p.add_argument("--size", type=positive_int, default=None,
                   help="square frame side in pixels (overrides the preset)")
    p.add_argument("--audio-rate", type=positive_int, default=None,
                   help="audio sample rate in Hz (overrides the preset)")


def spec_from_args(args: argparse.Namespace, resize: str = "crop") -> CacheSpec:
    cfg = PRESETS[args.preset]
    fps = args.fps if args.fps is not None else cfg.fps
    fps = int(fps) if float(fps).is_integer() else fps
    size = args.size if args.size is not None else cfg.video_size
    rate = args.audio_rate if args.audio_rate is not None else cfg.audio_rate
    return CacheSpec(fps=fps, video_size=(size, size), audio_rate=rate, resize=resize)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mmdiff.data.prepare", description=__doc__.split("\n")[0])
    p.add_argument("--src", required=True, help="folder of raw videos (searched recursively)")
    p.add_argument("--out", required=True, help="cache folder to create or resume")
    add_spec_flags(p, default_preset="paper")
    p.add_argument("--resize", choices=av_io.RESIZE_MODES, default="crop",
                   help="fit frames to the square size by centre-crop (default) or letterbox (black bars)")
    p.add_argument("--segment-seconds", type=float, default=None,
                   help="cut each source into consecutive pieces of this length (remainder dropped); "
                        "default: one item per source")
    p.add_argument("--skip-head", type=float, default=0.0,
                   help="seconds to drop from the start of each source")
    p.add_argument("--min-seconds", type=float, default=None,
                   help="shortest item kept (default: the preset's clip length, frames / fps)")
    p.add_argument("--workers", type=int, default=1, help="decoding processes (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Iterable[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = spec_from_args(args, resize=args.resize)
        cfg = PRESETS[args.preset]
        min_seconds = args.min_seconds if args.min_seconds is not None else cfg.video_frames / spec.fps
        settings = PrepareSettings(segment_seconds=args.segment_seconds, skip_head=args.skip_head,
                                   min_seconds=min_seconds)
        index = prepare(args.src, args.out, spec, settings, workers=args.workers, progress=not args.quiet)
    except (CacheError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summarize(index))
    return 0


if __name__ == "__main__":
    sys.exit(main())
