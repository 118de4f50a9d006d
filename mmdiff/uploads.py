"""Checking and decoding files a user hands in (the studio's uploads, the CLI's conditioning files).

Every check raises `UploadError` whose message names the file and says what was expected, so a UI
can show it as is. Decoding reads one stream at a time (a silent video can condition audio; a
wav/flac/mp3 can condition video) and stops once the needed seconds are read.

Layouts: video uint8 (F, H, W, 3); audio float32 (T,) mono in [-1, 1].
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmdiff.data.av_io import (AVClip, AVDecodeError, EmptyMediaError, MediaInfo, NoAudioError, NoVideoError, probe,
                            read_av)


class UploadError(ValueError):
    """An uploaded/given file cannot be used; the message says why and what is expected."""


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 200 * 1024 * 1024     # 200 MB
    max_seconds: float = 60.0
    max_side: int = 4096                   # pixels, either side of the video
    min_audio_rate: int = 4_000            # Hz
    max_audio_rate: int = 192_000          # Hz


def _name(path) -> str:
    return Path(path).name


def check_file(path: str | os.PathLike | None, limits: UploadLimits, what: str = "file") -> Path:
    """The file exists, is not empty and not over the size limit."""
    if path is None or str(path) == "":
        raise UploadError(f"no {what} given: upload one first")
    p = Path(path)
    if not p.is_file():
        raise UploadError(f"{_name(p)}: no such file")
    size = p.stat().st_size
    if size == 0:
        raise UploadError(f"{_name(p)}: the file is empty (0 bytes)")
    if size > limits.max_bytes:
        raise UploadError(f"{_name(p)}: {size / 2**20:.1f} MB is over the {limits.max_bytes / 2**20:.0f} MB "
                          "upload limit")
    return p


def check_media(path: str | os.PathLike | None, limits: UploadLimits, need_video: bool, need_audio: bool,
                what: str = "file") -> MediaInfo:
    """Probe an upload and check streams, duration, frame size and sample rate against `limits`."""
    p = check_file(path, limits, what)
    try:
        info = probe(p)
    except AVDecodeError:
        raise UploadError(f"{_name(p)}: not a readable audio/video file (expected e.g. mp4, mov, webm, "
                          "wav, flac, mp3)") from None
    if need_video and not info.has_video:
        raise UploadError(f"{_name(p)}: has no video stream; upload a video file")
    if need_audio and not info.has_audio:
        raise UploadError(f"{_name(p)}: has no audio track; upload a file with sound")
    if not info.has_video and not info.has_audio:
        raise UploadError(f"{_name(p)}: holds neither a video stream nor an audio track")
    if info.duration > limits.max_seconds:
        raise UploadError(f"{_name(p)}: {info.duration:.1f} s is longer than the {limits.max_seconds:g} s limit; "
                          "trim it first")
    if info.has_video and (info.width > limits.max_side or info.height > limits.max_side):
        raise UploadError(f"{_name(p)}: {info.width}x{info.height} video is larger than "
                          f"{limits.max_side}x{limits.max_side}")
    if info.has_video and (info.width < 2 or info.height < 2):
        raise UploadError(f"{_name(p)}: video frame size {info.width}x{info.height} is too small")
    if info.has_audio and not limits.min_audio_rate <= info.audio_rate <= limits.max_audio_rate:
        raise UploadError(f"{_name(p)}: audio sample rate {info.audio_rate} Hz is outside "
                          f"{limits.min_audio_rate}-{limits.max_audio_rate} Hz")
    return info


MIN_AUDIO_FRAMES = 1    # shortest audio condition taken: one video frame of sound (0.1 s at 10 fps);
                        # anything longer but under the clip length is padded with silence (notice)


def _read(path, streams: tuple[str, ...], fps: float | None, size: int | None, rate: int | None,
          max_seconds: float | None, start: float = 0.0, notices: list[str] | None = None) -> AVClip:
    """mmdiff.data.av_io.read_av (the project's one reader) on one stream from `start` s, its errors as
    UploadErrors. Undecodable packets are skipped as ffmpeg does and said in `notices`."""
    try:
        clip = read_av(path, fps, size, rate, start=start, duration=max_seconds, streams=streams)
    except NoVideoError:
        raise UploadError(f"{_name(path)}: has no video stream; upload a video file") from None
    except NoAudioError:
        raise UploadError(f"{_name(path)}: has no audio track; upload a file with sound") from None
    except EmptyMediaError as e:
        what = "video stream has no decodable frames" if "video" in streams else "audio track has no decodable samples"
        ends = re.search(r"ends (\d+(?:\.\d+)?) s", str(e))
        if start and ends:
            raise UploadError(f"{_name(path)}: starting at {start:g} s leaves no "
                              f"{'video' if 'video' in streams else 'audio'} ({float(ends[1]):.2f} s long)") from None
        if "no whole frame" in str(e):
            raise UploadError(f"{_name(path)}: shorter than one frame at {fps:g} fps") from None
        raise UploadError(f"{_name(path)}: the {what} (zero length)") from None
    except AVDecodeError as e:
        raise UploadError(f"{_name(path)}: {str(e).split(': ', 1)[-1]}") from None
    if clip.dropped and notices is not None:
        notices.append(f"{_name(path)} is damaged: {clip.dropped.describe()}; decoded past it as ffmpeg does")
    return clip


def read_video_frames(path: str | os.PathLike, fps: float, size: int | None, max_seconds: float | None = None,
                      start: float = 0.0, notices: list[str] | None = None) -> np.ndarray:
    """Decode the video stream only: (F, H, W, 3) uint8 at `fps` (frame selection), centre-cropped to size.

    Reads at most `max_seconds` from `start` s after the first frame (None: to the end). Undecodable packets
    are skipped as ffmpeg does (mmdiff.data.av_io.decode_frames) and said in `notices`.
    """
    return _read(path, ("video",), fps, size, None, max_seconds, start, notices).video


def read_audio_track(path: str | os.PathLike, rate: int, max_seconds: float | None = None, start: float = 0.0,
                     notices: list[str] | None = None) -> np.ndarray:
    """Decode the audio stream only, resampled to `rate` and down-mixed to mono (the channel mean, as the
    training data): (T,) float32 in [-1, 1], at most `max_seconds` from `start` s. Undecodable packets are
    skipped as ffmpeg does and said in `notices`."""
    return _read(path, ("audio",), None, None, int(rate), max_seconds, start, notices).audio


def _check_start(path, start: float, info: MediaInfo, stream: str, needs: float) -> float:
    """`start` as a float; UploadError when it is negative or leaves nothing of the file's `stream`
    (`needs`: the seconds the model takes, for the hint)."""
    start = float(start or 0.0)
    if not np.isfinite(start) or start < 0:
        raise UploadError(f"{_name(path)}: the start time must be 0 s or later, got {start:g} s")
    if info.duration > 0 and start >= info.duration:
        latest = max(0.0, info.duration - needs)
        raise UploadError(f"{_name(path)}: starting at {start:g} s leaves no {stream} ({info.duration:.2f} s long); "
                          f"choose a start from 0 to {latest:.2f} s")
    return start


def condition_video(path, model_config, limits: UploadLimits, start: float = 0.0,
                    notices: list[str] | None = None) -> np.ndarray:
    """A video upload as the model's video: (F, H, W, 3) uint8, F frames at the model's fps from `start` s."""
    cfg = model_config
    info = check_media(path, limits, need_video=True, need_audio=False, what="video")
    start = _check_start(path, start, info, "video", cfg.duration)
    frames = read_video_frames(path, cfg.fps, cfg.video_size, max_seconds=cfg.duration, start=start,
                               notices=notices)
    if len(frames) < cfg.video_frames:
        raise UploadError(f"{_name(path)}: {len(frames) / cfg.fps:.2f} s of video"
                          + (f" after {start:g} s" if start else "")
                          + f", the model needs {cfg.duration:.2f} s ({cfg.video_frames} frames at {cfg.fps} fps)")
    return frames[:cfg.video_frames]


def condition_audio(path, model_config, limits: UploadLimits, start: float = 0.0,
                    notices: list[str] | None = None) -> np.ndarray:
    """An audio (or video-with-sound) upload as the model's audio: (T,) float32, T samples from `start` s.

    Audio shorter than the clip is padded with silence at the end (a notice says so), never looped: a
    one-shot sound stays one event at its own time. Refused below MIN_AUDIO_FRAMES video frames of sound.
    """
    cfg = model_config
    info = check_media(path, limits, need_video=False, need_audio=True, what="audio file")
    start = _check_start(path, start, info, "audio", cfg.duration)
    audio = read_audio_track(path, cfg.audio_rate, max_seconds=cfg.duration, start=start, notices=notices)
    have, frame = len(audio) / cfg.audio_rate, MIN_AUDIO_FRAMES / cfg.fps
    if len(audio) < round(MIN_AUDIO_FRAMES * cfg.audio_rate / cfg.fps):
        raise UploadError(f"{_name(path)}: {have:.2f} s of audio" + (f" after {start:g} s" if start else "")
                          + f" is too short; the model needs {cfg.duration:.2f} s and pads at most down to "
                          f"{frame:.2f} s (one video frame) with silence")
    if len(audio) < cfg.audio_samples:
        if notices is not None:
            notices.append(f"{_name(path)}: {have:.2f} s of audio, padded with {cfg.duration - have:.2f} s of "
                           f"silence to the model's {cfg.duration:.2f} s")
        audio = np.pad(audio, (0, cfg.audio_samples - len(audio)))
    return audio[:cfg.audio_samples]


def start_range(path, needs: float, limits: UploadLimits) -> tuple[float, float]:
    """(the upload's length, the latest start that still leaves `needs` seconds) in s, for a start-time control;
    UploadError for a file that is no usable upload."""
    info = check_media(path, limits, need_video=False, need_audio=False)
    return info.duration, max(0.0, info.duration - needs)


def original_soundtrack(path, model_config, limits: UploadLimits, start: float = 0.0) -> np.ndarray | None:
    """The upload's own sound over the span condition_video takes (from `start`, the model's clip length and
    audio rate, padded as condition_audio pads), to hear beside a generated one; None when it has none there."""
    try:
        return condition_audio(path, model_config, limits, start=start)
    except UploadError:
        return None


def condition_tensor(modality: str, value: np.ndarray):
    """A decoded condition (condition_video / condition_audio) in the model's layout, batch of one:
    uint8 (F, H, W, 3) -> video (1, F, 3, H, W) in [-1, 1]; float (T,) -> audio (1, 1, T) (torch tensors)."""
    import torch

    from mmdiff.data.pixels import frames_to_model

    if modality == "video":
        return frames_to_model(value).unsqueeze(0)
    return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)).view(1, 1, -1)


def read_for_view(path, limits: UploadLimits, fps: float = 10.0, size: int = 64, audio_rate: int = 16_000,
                  max_seconds: float = 10.0, notices: list[str] | None = None) -> AVClip:
    """Any clip for the spectrogram view: an AVClip of (video (F, size, size, 3) uint8 or None, audio (T,) or
    None), each stream read on its own (a silent video, an audio file). At most `max_seconds` are read: the
    view is for short clips."""
    info = check_media(path, limits, need_video=False, need_audio=False)
    video = read_video_frames(path, fps, size, max_seconds, notices=notices) if info.has_video else None
    audio = read_audio_track(path, audio_rate, max_seconds, notices=notices) if info.has_audio else None
    return AVClip(video, audio, fps, audio_rate, _name(path))
