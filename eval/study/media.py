"""Clips for a study: listing, probing, seeded sampling, anonymous ids, export, gold variants.

A "clips dir" is a folder of video files with audio (.mp4 .mov .mkv .webm .avi). Sampling shuffles
the folder with a seed and probes clips in that order until N usable ones are found; clips that
cannot be decoded or have no audio/video stream are skipped and reported. Fewer than N usable clips
is an error (clips are never repeated).

Export makes browser-playable mp4 (H.264 yuv420p + AAC, +faststart) with the ffmpeg binary of
imageio-ffmpeg. A study shows every clip in one `MediaFormat` (the generated clips' own: frame size, fps,
length, audio rate and channels): real and gold clips are centre-cropped, scaled, resampled and cut to it, and
every clip is encoded with the same settings, so neither the picture's size or length nor the encoder's tag
tells a worker which clips are real. Without a format (`--keep-formats`), clips that already are H.264/AAC mp4
are stream-copied and everything else is transcoded. Container metadata is always stripped
(`-map_metadata -1`) so a title or encoder tag cannot reveal which system made a clip.
"""
from __future__ import annotations

import hashlib
import os
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av

from mmdiff.atomic import atomic_path
from mmdiff.data.av_io import list_videos

from .tasks import GOLD_AUDIO_NOISE, GOLD_BOTH_NOISE, GOLD_VIDEO_NOISE



class ClipError(ValueError):
    """A clip that cannot be used in a study (unreadable, no audio, too few clips...)."""


@dataclass(frozen=True)
class ClipInfo:
    path: Path
    container: str          # e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    video_codec: str
    audio_codec: str
    pix_fmt: str
    width: int
    height: int
    duration: float         # seconds
    fps: float = 0.0        # frames per second (average rate)
    audio_rate: int = 0     # Hz
    channels: int = 0       # audio channels

    @property
    def browser_ready(self) -> bool:
        """True when a stream copy into mp4 plays in every browser (H.264 4:2:0 + AAC in mp4)."""
        return (self.path.suffix.lower() == ".mp4" and "mp4" in self.container
                and self.video_codec == "h264" and self.audio_codec == "aac" and self.pix_fmt == "yuv420p")


def list_clips(clips_dir: str | os.PathLike) -> list[Path]:
    """Video files directly inside `clips_dir` (mmdiff.data.av_io.list_videos), sorted by name."""
    try:
        return list_videos(clips_dir)
    except NotADirectoryError as e:
        raise ClipError(f"clips dir {e}") from e


def probe_clip(path: Path) -> ClipInfo:
    """Read stream info with PyAV; ClipError naming the file when it has no video or no audio."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise ClipError(f"{path}: no video stream")
            if not c.streams.audio:
                raise ClipError(f"{path}: no audio track (a study clip needs sound)")
            v, a = c.streams.video[0], c.streams.audio[0]
            dur = (float(c.duration / av.time_base) if c.duration else
                   float(v.duration * v.time_base) if v.duration else _packet_span(c, v))
            return ClipInfo(path, c.format.name, v.codec_context.name, a.codec_context.name,
                            v.codec_context.pix_fmt or "", v.codec_context.width,
                            v.codec_context.height, dur, float(v.average_rate or v.base_rate or 0),
                            int(a.codec_context.sample_rate or 0), int(a.codec_context.channels or 0))
    except ClipError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise ClipError(f"{path}: cannot be read as video ({e})") from e


def _packet_span(container, stream) -> float:
    """Seconds from the first to the end of the last packet of `stream`, for files whose headers give no duration
    (a webm written as a stream, e.g. by a browser's MediaRecorder)."""
    first, end = None, 0.0
    for packet in container.demux(stream):
        if packet.pts is None:
            continue
        t = float(packet.pts * stream.time_base)
        first = t if first is None else min(first, t)
        end = max(end, t + float((packet.duration or 0) * stream.time_base))
    return max(0.0, end - (first or 0.0))


def sample_clips(clips_dir: str | os.PathLike, n: int, seed: int, label: str, min_duration: float = 0.0
                 ) -> tuple[list[ClipInfo], list[str]]:
    """N usable clips of `clips_dir` in a seeded order, and a message per skipped clip; with `min_duration`, clips
    shorter than that (less one frame of 25 fps) are skipped too (a study shows every clip at one length).

    The order depends only on (seed, label, file names), so reruns pick the same clips.
    """
    paths = list_clips(clips_dir)
    random.Random(f"{seed}:{label}").shuffle(paths)
    chosen: list[ClipInfo] = []
    skipped: list[str] = []
    for p in paths:
        if len(chosen) == n:
            break
        try:
            info = probe_clip(p)
        except ClipError as e:
            skipped.append(str(e))
            continue
        if info.duration < min_duration - 0.04:
            skipped.append(f"{p}: {info.duration:.2f} s, shorter than the study's {min_duration:.2f} s")
            continue
        chosen.append(info)
    if len(chosen) < n:
        raise ClipError(f"{label}: asked for {n} clips but {clips_dir} has only {len(chosen)} usable "
                        f"({len(paths)} video files, {len(skipped)} skipped"
                        + (": " + "; ".join(skipped) if skipped else "") + "). Lower --num or add clips.")
    return chosen, skipped


def clip_id(seed: int, group: str, source: str) -> str:
    """Anonymous, stable id: 12 hex digits of sha256(seed, group, source). Reveals nothing of `group`."""
    return hashlib.sha256(f"mmdiff-study\0{seed}\0{group}\0{source}".encode()).hexdigest()[:12]


def _run_ffmpeg(args: list[str], dst: Path) -> None:
    """Run ffmpeg writing to a temp file beside `dst`, then move it into place (atomic)."""
    import imageio_ffmpeg

    with atomic_path(dst, suffix=".mp4") as tmp:           # ffmpeg picks the container from the name
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *args, str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ClipError(f"ffmpeg failed writing {dst.name}: {proc.stderr.strip()[-800:]}")


_CODECS = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-crf", "18",
           "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", "-map_metadata", "-1", "-f", "mp4"]
_ENCODE = ["-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", *_CODECS]


@dataclass(frozen=True)
class MediaFormat:
    """How every clip of a study is shown: frame size, frame rate, length, audio rate and channels."""

    width: int
    height: int
    fps: float
    duration: float         # seconds
    audio_rate: int
    channels: int

    def describe(self) -> str:
        sound = "mono" if self.channels == 1 else f"{self.channels} channels"
        return (f"{self.width}x{self.height} at {self.fps:g} fps, {self.duration:.2f} s, {self.audio_rate} Hz "
                f"{sound}")

    def video_filter(self) -> str:
        """ffmpeg filter: frame rate, then scale to cover the frame and centre-crop to it (no bars, no stretch)."""
        return (f"fps={self.fps:g},scale={self.width}:{self.height}:force_original_aspect_ratio=increase:"
                f"flags=area,crop={self.width}:{self.height},setsar=1")

    def output_args(self) -> list[str]:
        return ["-t", f"{self.duration:.3f}", "-vf", self.video_filter(), "-ar", str(self.audio_rate),
                "-ac", str(self.channels), *_CODECS]


def common_format(generated: list[ClipInfo]) -> MediaFormat:
    """The generated clips' format (the smallest of each property where they differ; even frame sides, which
    H.264 4:2:0 needs): what real and gold clips are made to look like."""
    generated = [c for c in generated if c.duration > 0] or generated
    if not generated:
        raise ClipError("no generated clips to take the study's format from")
    even = lambda x: max(2, x - x % 2)  # noqa: E731
    return MediaFormat(even(min(c.width for c in generated)), even(min(c.height for c in generated)),
                       min(c.fps for c in generated if c.fps > 0) if any(c.fps > 0 for c in generated) else 25.0,
                       min(c.duration for c in generated), min(c.audio_rate for c in generated if c.audio_rate) or 48000,
                       min(c.channels for c in generated if c.channels) or 1)


def differences(fmt: MediaFormat, clips: list[ClipInfo]) -> list[str]:
    """What has to change for `clips` to be shown in `fmt` (for the build report), e.g. ["size 64x48", "25 fps"]."""
    found = []
    for name, differs, value in (
            ("size", lambda c: (c.width, c.height) != (fmt.width, fmt.height), lambda c: f"{c.width}x{c.height}"),
            ("frame rate", lambda c: abs(c.fps - fmt.fps) > 1e-3, lambda c: f"{c.fps:g} fps"),
            ("length", lambda c: c.duration > fmt.duration + 0.04, lambda c: f"{c.duration:.2f} s"),
            ("audio rate", lambda c: c.audio_rate != fmt.audio_rate, lambda c: f"{c.audio_rate} Hz"),
            ("audio channels", lambda c: c.channels != fmt.channels, lambda c: str(c.channels))):
        seen = sorted({value(c) for c in clips if differs(c)})
        if seen:
            found.append(f"{name} {', '.join(seen[:3])}" + (" ..." if len(seen) > 3 else ""))
    return found


def export_clip(info: ClipInfo, dst: Path, fmt: MediaFormat | None = None) -> str:
    """Write `info.path` to `dst` as browser-playable mp4; returns "copied" or "transcoded". With `fmt` it is always
    transcoded to that format (cropped, scaled, resampled, cut), with the same encoder settings as every other clip."""
    if fmt is not None:
        _run_ffmpeg(["-i", str(info.path), "-map", "0:v:0", "-map", "0:a:0", *fmt.output_args()], dst)
        return "transcoded"
    if info.browser_ready:
        _run_ffmpeg(["-i", str(info.path), "-map", "0:v:0", "-map", "0:a:0", "-c", "copy",
                     "-movflags", "+faststart", "-map_metadata", "-1", "-f", "mp4"], dst)
        return "copied"
    _run_ffmpeg(["-i", str(info.path), "-map", "0:v:0", "-map", "0:a:0", *_ENCODE], dst)
    return "transcoded"


def make_gold_clip(info: ClipInfo, variant: str, dst: Path, seed: int, fmt: MediaFormat | None = None) -> None:
    """Broken copy of a real clip for attention checks (see eval.study.tasks GOLD_*).

    video_noise: frames replaced by uniform random noise, audio kept. audio_noise: frames kept, audio
    replaced by loud white noise. both_noise: both replaced. Same size and duration as the source, or, with `fmt`,
    in that format like every other clip of the study.
    """
    dur = f"{max(fmt.duration if fmt else info.duration, 0.1):.3f}"
    size = f"{fmt.width}x{fmt.height}" if fmt else f"{info.width + info.width % 2}x{info.height + info.height % 2}"
    rate, fps = (f":sample_rate={fmt.audio_rate}", f"{fmt.fps:g}") if fmt else ("", "25")
    noise_v = ["-f", "lavfi", "-i", f"nullsrc=s={size}:r={fps}:d={dur},geq=random(1)*255:128:128"]
    noise_a = ["-f", "lavfi", "-i", f"anoisesrc=color=white:amplitude=0.7:seed={seed % 2**31}:d={dur}{rate}"]
    src = ["-i", str(info.path)]
    if variant == GOLD_VIDEO_NOISE:
        inputs, maps = noise_v + src, ["-map", "0:v:0", "-map", "1:a:0"]
    elif variant == GOLD_AUDIO_NOISE:
        inputs, maps = src + noise_a, ["-map", "0:v:0", "-map", "1:a:0"]
    elif variant == GOLD_BOTH_NOISE:
        inputs, maps = noise_v + noise_a, ["-map", "0:v:0", "-map", "1:a:0"]
    else:
        raise ValueError(f"unknown gold variant {variant!r}")
    _run_ffmpeg([*inputs, *maps, *(fmt.output_args() if fmt else ["-t", dur, *_ENCODE])], dst)
