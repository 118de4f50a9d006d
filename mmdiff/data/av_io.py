"""Decode any common audio-video container into model-ready arrays, and write clips back as mp4 + wav.

Decoding (PyAV, one demux pass over the file):
- time origin t = 0 is the first decoded video frame; audio is placed on the same clock
  (leading audio before it is dropped, a late audio start is zero-padded);
- video is resampled to the target fps by frame *selection*: output frame k shows the source frame
  on screen at t_k = start + k / fps (the last one with pts <= t_k); frames are never blended;
- frames are resized to the target size by centre-crop (default) or letterbox (black bars);
- audio is resampled with libswresample to the target rate and downmixed to mono by averaging
  the channels;
- the clip keeps only whole output frames inside both streams, and the audio is cut (or, for a
  gap under AUDIO_END_TOLERANCE_S, zero-padded) to exactly n_frames * audio_rate / fps samples.
  This makes AAC padding/priming irrelevant: a written 1.6 s clip decodes to exactly 1.6 s.

Damaged files are decoded as ffmpeg does: a packet its decoder rejects is skipped and decoding goes on
(a skipped video frame leaves the previous one on screen; a skipped audio packet becomes silence of its
length, so the streams stay in sync), and a read error of the demuxer ends the file there. What was skipped
is counted (`DecodeTally`, `AVClip.dropped`); a stream fails (AVDecodeError naming the file) only when more
than MAX_BAD_PACKET_FRACTION of its packets are undecodable or nothing of it decodes.

Layouts: video uint8 (F, H, W, 3) RGB; audio float32 (T,) mono in [-1, 1].
"""
from __future__ import annotations

import functools
import math
import os
import wave
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from PIL import Image

from mmdiff.atomic import atomic_path

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
RESIZE_MODES = ("crop", "letterbox")
FRAME_TIME_EPS = 1e-5          # s; a frame with pts <= t + eps is on screen at t (absorbs pts rounding)
AUDIO_END_TOLERANCE_S = 0.025  # s; an audio stream ending this much before the video is zero-padded
MAX_BAD_PACKET_FRACTION = 0.1  # a stream with more undecodable packets than this share is rejected


# ---------------------------------------------------------------------------------------------
def list_videos(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Video files (by extension) in `folder` (and below it with `recursive`), hidden files and folders
    skipped, sorted by path relative to `folder`; NotADirectoryError when `folder` is not a folder.
    The one listing of clips: training data (prepare), evaluation and studies."""
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} does not exist or is not a folder")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        found += [Path(dirpath) / f for f in filenames
                  if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_EXTENSIONS]
    return sorted((p for p in found if p.is_file()), key=lambda p: p.relative_to(root).as_posix())


# errors
class MediaError(ValueError):
    """A media file could not be turned into a clip; `path` names it."""

    def __init__(self, path: str | os.PathLike, message: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class AVDecodeError(MediaError):
    """The file is unreadable, corrupt or not a media container."""


class NoVideoError(MediaError):
    """The container has no video stream."""


class NoAudioError(MediaError):
    """The container has no audio stream."""


class EmptyMediaError(MediaError):
    """The streams decode to zero frames / zero whole output frames."""


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dropped:
    """What a decode pass skipped: undecodable packets per stream (of those read) and a read error that
    ended the file early ("" when none)."""

    video: int = 0
    audio: int = 0
    video_read: int = 0
    audio_read: int = 0
    read_error: str = ""
    first_error: str = ""
    ended_at: float = 0.0          # where decoding ran out, when well before the length the header announces
    announced: float = 0.0         # that length (s)

    def __bool__(self) -> bool:
        return bool(self.video or self.audio or self.read_error or self.ended_at)

    def describe(self) -> str:
        """One line for a notice, e.g. "skipped 1 of 352 audio packets (undecodable: ...)"; "" when nothing."""
        parts = [f"skipped {n} of {total} {kind} packet{'s' if total != 1 else ''}"
                 for kind, n, total in (("video", self.video, self.video_read), ("audio", self.audio, self.audio_read))
                 if n]
        text = ", ".join(parts) + (f" (undecodable: {self.first_error})" if parts and self.first_error else "")
        if self.read_error:
            text += ("; " if text else "") + f"reading stopped early ({self.read_error})"
        if self.ended_at:
            text += (("; " if text else "") + f"the file ends at {self.ended_at:.2f} s of the {self.announced:.2f} s "
                     "its header announces (cut short?)")
        return text


@dataclass
class DecodeTally:
    """Counts packets read and skipped during one decode pass of `path` (see decode_frames)."""

    path: str
    read: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    bad: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    first_error: str = ""
    read_error: str = ""
    skipped_since_last: dict[str, bool] = field(default_factory=lambda: {"video": False, "audio": False})
    ended_at: float = 0.0
    announced: float = 0.0

    def note_end(self, decoded_end: float, announced: float, wanted: float) -> None:
        """Record a file that ran out well before the `wanted` part of the `announced` length (a truncated file):
        more than max(0.5 s, 10%) short."""
        if announced > 0 and decoded_end < wanted - max(0.5, 0.1 * wanted):
            self.ended_at, self.announced = decoded_end, announced

    def skip(self, kind: str, error: Exception) -> None:
        self.bad[kind] = self.bad.get(kind, 0) + 1
        self.skipped_since_last[kind] = True
        self.first_error = self.first_error or _short(error)

    def dropped(self) -> Dropped:
        return Dropped(video=self.bad.get("video", 0), audio=self.bad.get("audio", 0),
                       video_read=self.read.get("video", 0), audio_read=self.read.get("audio", 0),
                       read_error=self.read_error, first_error=self.first_error, ended_at=self.ended_at,
                       announced=self.announced)

    def check(self, kind: str) -> None:
        """AVDecodeError when more than MAX_BAD_PACKET_FRACTION of the `kind` packets were undecodable."""
        bad, read = self.bad.get(kind, 0), self.read.get(kind, 0)
        if bad and bad > MAX_BAD_PACKET_FRACTION * max(read, 1):
            raise AVDecodeError(self.path, f"{bad} of {read} {kind} packets are undecodable (at most "
                                           f"{MAX_BAD_PACKET_FRACTION:.0%} may be skipped): the file is damaged "
                                           f"({self.first_error})")

    def empty_reason(self, kind: str) -> str:
        """Why a stream gave nothing, for EmptyMediaError ("" when no packet failed)."""
        bad = self.bad.get(kind, 0)
        text = f"; {bad} of {self.read.get(kind, 0)} packets undecodable ({self.first_error})" if bad else ""
        return text + (f"; reading stopped early ({self.read_error})" if self.read_error else "")


def _short(error: Exception) -> str:
    """An FFmpeg error without the file path PyAV appends."""
    text = getattr(error, "strerror", None) or str(error)
    return f"{type(error).__name__}: {text}"


@dataclass(frozen=True)
class AVClip:
    """Decoded audio-video at a fixed frame rate and sample rate, covering the same time: the one clip type of
    the project (training data, evaluation, views, uploads). A stream that was not read (or that a file lacks,
    e.g. an audio-only upload) is None."""

    video: np.ndarray | None     # (F, H, W, 3) uint8
    audio: np.ndarray | None     # (T,) float32 in [-1, 1], T = F * audio_rate / fps when both are present
    fps: float
    audio_rate: int
    name: str = ""               # what the clip is (file name, "sample-3", a view's title)
    dropped: Dropped = Dropped()   # what decoding skipped (a damaged file); falsy when nothing

    @property
    def num_frames(self) -> int:
        return 0 if self.video is None else int(self.video.shape[0])

    @property
    def duration(self) -> float:
        """Seconds covered: the longer of the two streams (they are equal when both were decoded together)."""
        d_v = self.num_frames / self.fps if self.fps > 0 else 0.0
        d_a = len(self.audio) / self.audio_rate if self.audio is not None and self.audio_rate else 0.0
        return max(d_v, d_a)


@dataclass(frozen=True)
class MediaInfo:
    """What a container holds, read from its headers (durations may be estimates)."""

    path: str
    has_video: bool
    has_audio: bool
    width: int
    height: int
    fps: float
    duration: float
    audio_rate: int
    audio_channels: int


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    if not Path(path).is_file():
        raise AVDecodeError(path, "no such file")
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise AVDecodeError(path, f"cannot open as audio-video ({e})") from e


def probe(path: str | os.PathLike) -> MediaInfo:
    """Read stream headers without decoding."""
    with _open(path) as c:
        vs = c.streams.video[0] if c.streams.video else None
        as_ = c.streams.audio[0] if c.streams.audio else None
        duration = float(c.duration / av.time_base) if c.duration else 0.0
        rate = vs.guessed_rate or vs.average_rate if vs is not None else None
        return MediaInfo(
            path=str(path), has_video=vs is not None, has_audio=as_ is not None,
            width=vs.codec_context.width if vs is not None else 0,
            height=vs.codec_context.height if vs is not None else 0,
            fps=float(rate) if rate else 0.0, duration=duration,
            audio_rate=as_.codec_context.sample_rate if as_ is not None else 0,
            audio_channels=as_.codec_context.channels if as_ is not None else 0)


# ---------------------------------------------------------------------------------------------
# pure pieces: size, resize, frame selection
def as_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    """An int means a square; a pair is (H, W)."""
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size}")
    return h, w


def crop_box(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Centred (top, left, height, width) of the largest src region with the aspect of dst."""
    sh, sw = src_hw
    dh, dw = dst_hw
    if sw * dh > sh * dw:                       # source is wider: cut left and right
        w = max(1, round(sh * dw / dh))
        return 0, (sw - w) // 2, sh, w
    h = max(1, round(sw * dh / dw))             # source is taller: cut top and bottom
    return (sh - h) // 2, 0, h, sw


def letterbox_box(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Centred (top, left, height, width) where the whole scaled source sits inside dst."""
    sh, sw = src_hw
    dh, dw = dst_hw
    scale = min(dh / sh, dw / sw)
    h, w = min(dh, max(1, round(sh * scale))), min(dw, max(1, round(sw * scale)))
    return (dh - h) // 2, (dw - w) // 2, h, w


def resize_frame(rgb: np.ndarray, size: int | tuple[int, int], mode: str = "crop") -> np.ndarray:
    """(h, w, 3) uint8 -> (H, W, 3) uint8 by centre-crop or letterbox, then antialiased bicubic."""
    dh, dw = as_hw(size)
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    sh, sw = rgb.shape[:2]
    if mode == "crop":
        top, left, h, w = crop_box((sh, sw), (dh, dw))
        region = rgb[top:top + h, left:left + w]
        if (h, w) == (dh, dw):
            return np.ascontiguousarray(region)
        return np.asarray(Image.fromarray(region).resize((dw, dh), Image.Resampling.BICUBIC))
    top, left, h, w = letterbox_box((sh, sw), (dh, dw))
    out = np.zeros((dh, dw, 3), np.uint8)
    inner = rgb if (h, w) == (sh, sw) else np.asarray(
        Image.fromarray(np.ascontiguousarray(rgb)).resize((w, h), Image.Resampling.BICUBIC))
    out[top:top + h, left:left + w] = inner
    return out


def select_frames(times: np.ndarray, fps: float, end: float, start: float = 0.0) -> np.ndarray:
    """Indices of the source frames on screen at t_k = start + k / fps for every whole output frame.

    times: (N,) increasing source frame times in s; end: time the last source frame stops showing.
    Output frame k is kept when its whole interval [t_k, t_k + 1/fps) lies before `end`.
    """
    n_out = num_whole_frames(end - start, fps)
    targets = start + np.arange(n_out) / fps
    idx = np.searchsorted(times, targets + FRAME_TIME_EPS, side="right") - 1
    return np.clip(idx, 0, len(times) - 1)


def num_whole_frames(seconds: float, fps: float) -> int:
    """Whole frame periods in `seconds` (tolerant to float rounding)."""
    return max(0, math.floor(seconds * fps + 1e-6))


# ---------------------------------------------------------------------------------------------
# decoding
class _FramePicker:
    """Streams decoded frames and keeps, resized, the one on screen at each output time."""

    def __init__(self, fps: float, size: tuple[int, int] | None, resize: str, start: float,
                 stop: float | None) -> None:
        self.fps, self.size, self.resize, self.start, self.stop = fps, size, resize, start, stop
        self.out: list[np.ndarray] = []   # each (H, W, 3) uint8
        self.prev = None                  # last av.VideoFrame seen
        self.prev_rgb: np.ndarray | None = None
        self.times: list[float] = []      # relative times of decoded frames (last two are kept)

    def _target(self) -> float:
        return self.start + len(self.out) / self.fps

    def _emit_prev(self) -> None:
        if self.prev_rgb is None:
            rgb = self.prev.to_ndarray(format="rgb24")           # (h, w, 3)
            self.prev_rgb = rgb if self.size is None else resize_frame(rgb, self.size, self.resize)
        self.out.append(self.prev_rgb)

    def _room(self) -> bool:
        return self.stop is None or self._target() < self.stop - FRAME_TIME_EPS

    def push(self, frame, rel_time: float) -> None:
        while self.prev is not None and self._room() and self._target() + FRAME_TIME_EPS < rel_time:
            self._emit_prev()
        self.prev, self.prev_rgb = frame, None
        self.times = (self.times + [rel_time])[-2:]

    def finish(self, frame_dur: float) -> tuple[np.ndarray, float]:
        """Emit the tail and return (frames (F, H, W, 3), end time of the last source frame)."""
        if self.prev is None:
            return np.zeros((0, 0, 0, 3), np.uint8), 0.0
        if len(self.times) == 2 and self.times[1] > self.times[0]:
            frame_dur = self.times[1] - self.times[0]
        end = self.times[-1] + frame_dur
        if self.stop is not None:
            end = min(end, self.stop)
        n_keep = num_whole_frames(end - self.start, self.fps)
        while len(self.out) < n_keep:
            self._emit_prev()
        return np.stack(self.out[:n_keep]) if n_keep else np.zeros((0, 0, 0, 3), np.uint8), end


class _AudioCollector:
    """Resamples decoded audio to `rate` (channels kept) and records where it starts. The one down-mix of
    the project: the mean over channels (FFmpeg's own "mono" layout is (L + R) / sqrt 2, 3 dB louder)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.resampler = av.AudioResampler(format="fltp", rate=rate)
        self.chunks: list[np.ndarray] = []   # each (C, n) float32
        self.first_time: float | None = None
        self.samples = 0                     # per channel, so far
        self.in_end: float | None = None     # source time where the last pushed frame ends

    def push(self, frame, after_skip: bool = False) -> None:
        """Add a decoded frame; `after_skip`: packets were skipped just before it, so the time they covered
        (from the frames' timestamps) becomes silence and the audio stays on the video's clock."""
        if self.first_time is None and frame.time is not None:
            self.first_time = float(frame.time)
        if after_skip and self.chunks and frame.time is not None and self.in_end is not None:
            gap = round((float(frame.time) - self.in_end) * self.rate)
            if gap > 0:
                self.chunks.append(np.zeros((self.chunks[-1].shape[0], gap), np.float32))   # (C, gap)
                self.samples += gap
        if frame.time is not None and frame.sample_rate:
            self.in_end = float(frame.time) + frame.samples / frame.sample_rate
        for g in self.resampler.resample(frame):
            self.chunks.append(g.to_ndarray())
            self.samples += self.chunks[-1].shape[1]

    def finish(self) -> np.ndarray:
        """(T,) float32 mono: the mean over channels."""
        for g in self.resampler.resample(None):
            self.chunks.append(g.to_ndarray())
        if not self.chunks:
            return np.zeros(0, np.float32)
        channels = min(c.shape[0] for c in self.chunks)
        return np.concatenate([c[:channels] for c in self.chunks], axis=1).mean(axis=0).astype(np.float32)


def decode_frames(container, streams, tally: DecodeTally) -> Iterator:
    """Decoded frames of `streams` in file order, past damage as ffmpeg goes: a packet whose decoder fails
    is skipped (counted in `tally`), and a read error of the demuxer ends the file (kept in `tally`)."""
    packets = container.demux(*streams)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as e:            # ffmpeg, too, treats a read error as the end of the input
            tally.read_error = _short(e)
            break
        kind = packet.stream.type
        if packet.size:
            tally.read[kind] = tally.read.get(kind, 0) + 1
        try:
            frames = packet.decode()
        except av.FFmpegError as e:
            tally.skip(kind, e)
            continue
        yield from frames
    for stream in streams:                     # the read error skipped the flush: drain buffered frames
        try:
            yield from stream.decode(None)
        except av.FFmpegError:
            pass


def _place_audio(audio: np.ndarray, offset_s: float, rate: int) -> np.ndarray:
    """Shift audio that starts at `offset_s` on the video clock so that index 0 is t = 0."""
    shift = round(offset_s * rate)
    if shift > 0:
        return np.concatenate([np.zeros(shift, np.float32), audio])
    return audio[-shift:]


STREAMS = ("video", "audio")


def read_av(path: str | os.PathLike, fps: float | None, size: int | tuple[int, int] | None,
            audio_rate: int | None, resize: str = "crop", start: float = 0.0, duration: float | None = None,
            streams: tuple[str, ...] = STREAMS) -> AVClip:
    """Decode `path` into an AVClip at (fps, size, audio_rate): the one reader of the project.

    fps None keeps the video's own frame rate, audio_rate None the audio's own sample rate, size None the
    source size. start/duration select a window (s, on the video clock; on the audio's own clock when only
    audio is read); the file is decoded from its beginning and decoding stops once the window is read.
    `streams` are the ones to read (both by default; a clip of one stream has None for the other). Raises
    AVDecodeError, NoVideoError, NoAudioError, EmptyMediaError.
    """
    if not streams or set(streams) - set(STREAMS):
        raise ValueError(f"streams must be a non-empty subset of {STREAMS}, got {streams}")
    if (audio_rate is not None and (int(audio_rate) != audio_rate or audio_rate <= 0)) or (fps is not None and fps <= 0):
        raise ValueError(f"fps and audio_rate must be positive, got fps={fps}, audio_rate={audio_rate}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {resize!r}")
    hw = None if size is None else as_hw(size)
    stop = None if duration is None else start + duration
    with _open(path) as c:
        if "video" in streams and not c.streams.video:
            raise NoVideoError(path, "no video stream")
        if "audio" in streams and not c.streams.audio:
            raise NoAudioError(path, "no audio track")
        vs = c.streams.video[0] if "video" in streams else None
        as_ = c.streams.audio[0] if "audio" in streams else None
        if vs is not None:
            vs.thread_type = "AUTO"
            rate_guess = vs.guessed_rate or vs.average_rate or Fraction(25)
            fps = fps or float(vs.average_rate or rate_guess)
            picker = _FramePicker(fps, hw, resize, start, stop)
        if as_ is not None:
            audio_rate = int(audio_rate or as_.codec_context.sample_rate or as_.rate)
            audio = _AudioCollector(audio_rate)
        t0, n_decoded, tally = None, 0, DecodeTally(str(path))
        try:
            for frame in decode_frames(c, [s for s in (vs, as_) if s is not None], tally):
                if isinstance(frame, av.VideoFrame):
                    t = frame.time if frame.time is not None else n_decoded / float(rate_guess)
                    t0 = t if t0 is None else t0
                    picker.push(frame, t - t0)
                    n_decoded += 1
                elif isinstance(frame, av.AudioFrame):
                    audio.push(frame, tally.skipped_since_last["audio"])
                    tally.skipped_since_last["audio"] = False
                if stop is not None and _window_read(picker if vs else None, audio if as_ else None, t0, stop):
                    break
            video, video_end = picker.finish(1.0 / float(rate_guess)) if vs is not None else (None, None)
            samples = audio.finish() if as_ is not None else None
            announced = float(c.duration / av.time_base) if c.duration else 0.0
            ends = [e for e in (video_end, None if samples is None or not audio_rate else
                                (audio.first_time or 0.0) - (t0 or 0.0) + samples.size / audio_rate) if e is not None]
            if ends:
                tally.note_end(max(ends), announced, announced if stop is None else min(announced, stop))
        except (av.FFmpegError, ValueError) as e:      # pixel/sample conversion of odd formats
            if isinstance(e, MediaError):
                raise
            raise AVDecodeError(path, f"cannot convert decoded frames ({type(e).__name__}: {e})") from e
    if vs is not None and n_decoded == 0:
        raise EmptyMediaError(path, "the video stream has no decodable frames" + tally.empty_reason("video"))
    if as_ is not None and samples.size == 0:
        raise EmptyMediaError(path, "the audio track has no decodable samples" + tally.empty_reason("audio"))
    for kind, stream in (("video", vs), ("audio", as_)):
        if stream is not None:
            tally.check(kind)
    if vs is None:                                     # audio alone, on its own clock
        return _audio_only(path, samples, audio_rate, start, duration, tally.dropped())
    if as_ is None:
        return _video_only(path, video, fps, start, video_end, tally.dropped())
    samples = _place_audio(samples, (audio.first_time or 0.0) - (t0 or 0.0), int(audio_rate))
    return _join(path, video, samples, fps, int(audio_rate), start, video_end, tally.dropped())


def _window_read(picker: "_FramePicker | None", audio: "_AudioCollector | None", t0: float | None,
                 stop: float) -> bool:
    """Both streams being read hold everything up to `stop` (plus a frame of margin): decoding can stop."""
    if picker is not None and (not picker.times or picker.times[-1] < stop + 1.0 / picker.fps):
        return False
    if audio is not None:
        origin = (t0 or 0.0) if picker is not None else (audio.first_time or 0.0)
        covered = (audio.first_time or 0.0) - origin + audio.samples / audio.rate
        if covered < stop + 2 * AUDIO_END_TOLERANCE_S:     # margin for the resampler's delay
            return False
    return True


def _video_only(path, video: np.ndarray, fps: float, start: float, video_end: float,
                dropped: Dropped = Dropped()) -> AVClip:
    n = min(video.shape[0], num_whole_frames(video_end - start, fps))
    if n == 0:
        raise EmptyMediaError(path, f"no whole frame at {fps:g} fps from {start:.3f} s (video ends {video_end:.3f} s)")
    return AVClip(video=video[:n], audio=None, fps=fps, audio_rate=0, name=Path(path).name, dropped=dropped)


def _audio_only(path, samples: np.ndarray, rate: int, start: float, duration: float | None,
                dropped: Dropped = Dropped()) -> AVClip:
    a0 = round(start * rate)
    a1 = samples.size if duration is None else min(samples.size, a0 + round(duration * rate))
    if a1 <= a0:
        raise EmptyMediaError(path, f"no audio after {start:.3f} s (the track ends {samples.size / rate:.3f} s)")
    return AVClip(video=None, audio=np.clip(samples[a0:a1], -1.0, 1.0).astype(np.float32), fps=0.0,
                  audio_rate=rate, name=Path(path).name, dropped=dropped)


def _join(path, video: np.ndarray, samples: np.ndarray, fps: float, rate: int, start: float,
          video_end: float, dropped: Dropped = Dropped()) -> AVClip:
    """Trim both streams to the whole frames they share; audio gets exactly F * rate / fps samples."""
    audio_end = samples.size / rate + AUDIO_END_TOLERANCE_S
    n = min(video.shape[0], num_whole_frames(min(video_end, audio_end) - start, fps))
    if n == 0:
        raise EmptyMediaError(
            path, f"no whole frame at {fps} fps from {start:.3f} s (video ends {video_end:.3f} s, "
                  f"audio ends {samples.size / rate:.3f} s)")
    a0, a1 = round(start * rate), round(start * rate) + round(n * rate / fps)
    audio = samples[a0:a1]
    audio = np.pad(audio, (0, a1 - a0 - audio.size)) if audio.size < a1 - a0 else audio
    return AVClip(video=video[:n], audio=np.clip(audio, -1.0, 1.0).astype(np.float32), fps=fps,
                  audio_rate=rate, name=Path(path).name, dropped=dropped)


# ---------------------------------------------------------------------------------------------
# encoding
def to_uint8_frames(video) -> np.ndarray:
    """uint8 (F, H, W, 3) passes through; float (F, 3, H, W) in [-1, 1] -> uint8 (F, H, W, 3)."""
    v = np.asarray(video)
    if v.dtype == np.uint8:
        if v.ndim != 4 or v.shape[-1] != 3:
            raise ValueError(f"uint8 video must be (F, H, W, 3), got shape {v.shape}")
        return v
    if not np.issubdtype(v.dtype, np.floating):
        raise ValueError(f"video must be uint8 (F, H, W, 3) or float (F, 3, H, W), got dtype {v.dtype}")
    if v.ndim != 4 or v.shape[1] != 3:
        raise ValueError(f"float video must be (F, 3, H, W) in [-1, 1], got shape {v.shape}")
    from mmdiff.data.pixels import model_to_frames     # torch only where float frames come in

    return np.ascontiguousarray(model_to_frames(v.astype(np.float32)))     # (F, H, W, 3)


def to_mono_float(audio) -> np.ndarray:
    """(T,) or (1, T) float in [-1, 1] -> (T,) float32, clipped."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 1:
        raise ValueError(f"audio must be (T,) or (1, T), got shape {a.shape}")
    return np.clip(a, -1.0, 1.0)


def _even(frames: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides: repeat the last row/column where a side is odd."""
    f, h, w, _ = frames.shape
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _encode_mp4(tmp: Path, frames: np.ndarray, audio: np.ndarray, fps: float, audio_rate: int,
                crf: int) -> None:
    with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as c:
        vs = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        vs.options = {"crf": str(crf), "preset": "medium"}
        as_ = c.add_stream("aac", rate=audio_rate)
        as_.layout = "mono"
        as_.bit_rate = min(128_000, 4 * audio_rate)
        for rgb in frames:
            c.mux(vs.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        c.mux(vs.encode(None))
        for s in range(0, audio.size, 1024):
            frame = av.AudioFrame.from_ndarray(audio[None, s:s + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts = audio_rate, s
            c.mux(as_.encode(frame))
        c.mux(as_.encode(None))


@functools.cache
def _aac_rates() -> tuple[int, ...]:
    """The sample rates ffmpeg's AAC encoder takes (empty when it does not say)."""
    return tuple(sorted(av.codec.Codec("aac", "w").audio_rates or ()))


def check_mp4_audio_rate(rate: int) -> None:
    """ValueError when the mp4's audio codec (AAC) cannot store `rate` Hz: checked before sampling, not after."""
    rates = _aac_rates()
    if rates and int(rate) not in rates:
        raise ValueError(f"audio at {rate} Hz cannot be written to an mp4: AAC stores only "
                         f"{', '.join(map(str, rates))} Hz (the model's config sets audio_rate = audio length / "
                         "clip duration; for a converted model, check --args)")


def write_clip(path_mp4: str | os.PathLike, video, audio, fps: float, audio_rate: int,
               wav_path: str | os.PathLike | None = None, crf: int = 18) -> Path:
    """Write an H.264/AAC yuv420p mp4 (+faststart, browser-playable) and optionally a 16-bit wav.

    video: uint8 (F, H, W, 3) or float (F, 3, H, W) in [-1, 1]; audio: (T,) float in [-1, 1].
    Odd sides are padded by one repeated row/column (yuv420p). Both files are written to a temp
    name in the same folder and renamed into place.
    """
    check_mp4_audio_rate(audio_rate)
    frames, samples = _even(to_uint8_frames(video)), to_mono_float(audio)
    if frames.shape[0] == 0 or samples.size == 0:
        raise ValueError(f"{path_mp4}: refusing to write an empty clip ({frames.shape[0]} frames, "
                         f"{samples.size} samples)")
    path = Path(path_mp4)
    try:
        with atomic_path(path) as tmp:
            _encode_mp4(tmp, frames, samples, fps, int(audio_rate), crf)
    except av.FFmpegError as e:
        raise ValueError(f"{path}: encoding failed ({e})") from e
    if wav_path is not None:
        write_wav(wav_path, samples, int(audio_rate))
    return path


def write_wav(path: str | os.PathLike, audio, rate: int) -> Path:
    """Mono 16-bit PCM wav, written atomically. audio: (T,) float in [-1, 1]."""
    pcm = np.round(to_mono_float(audio) * 32767.0).astype("<i2")
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(pcm.tobytes())
    return Path(path)


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """16-bit PCM wav -> ((T,) float32 mono (channel mean), rate)."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise AVDecodeError(path, f"expected 16-bit PCM wav, got {8 * w.getsampwidth()}-bit")
            ch, rate, frames = w.getnchannels(), w.getframerate(), w.getnframes()
            raw = w.readframes(frames)
    except (wave.Error, EOFError) as e:
        raise AVDecodeError(path, f"not a readable wav ({e})") from e
    if len(raw) != frames * ch * 2:
        raise AVDecodeError(path, f"truncated wav: its header promises {frames} frames, the file holds "
                                  f"{len(raw) / (ch * 2):g}")
    pcm = np.frombuffer(raw, "<i2").reshape(-1, ch).astype(np.float32) / 32767.0
    return pcm.mean(axis=1), rate


__all__ = [
    "AVClip", "STREAMS", "Dropped", "DecodeTally", "decode_frames", "MAX_BAD_PACKET_FRACTION", "MediaInfo",
    "MediaError", "AVDecodeError", "NoVideoError", "NoAudioError",
    "EmptyMediaError", "VIDEO_EXTENSIONS", "RESIZE_MODES", "list_videos", "probe", "read_av", "write_clip",
    "write_wav", "read_wav", "resize_frame", "crop_box", "letterbox_box", "select_frames",
    "num_whole_frames", "to_uint8_frames", "to_mono_float", "as_hw",
]
