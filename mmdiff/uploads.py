"""Checking and decoding files a user hands in (the studio's uploads, the CLI's conditioning files).

Every check raises `UploadError` whose message names the file and says what was expected, so a UI
can show it as is. Decoding reads one stream at a time (a silent video can condition audio; a
wav/flac/mp3 can condition video) and stops once the needed seconds are read.

Layouts: video uint8 (F, H, W, 3); audio float32 (T,) mono in [-1, 1].
"""
from __future__ import annotations

import os
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


def _read(path, streams: tuple[str, ...], fps: float | None, size: int | None, rate: int | None,
          max_seconds: float | None) -> AVClip:
    """mmdiff.data.av_io.read_av (the project's one reader) on one stream, its errors as UploadErrors."""
    try:
        return read_av(path, fps, size, rate, duration=max_seconds, streams=streams)
    except NoVideoError:
        raise UploadError(f"{_name(path)}: has no video stream; upload a video file") from None
    except NoAudioError:
        raise UploadError(f"{_name(path)}: has no audio track; upload a file with sound") from None
    except EmptyMediaError as e:
        what = "video stream has no decodable frames" if "video" in streams else "audio track has no decodable samples"
        if "no whole frame" in str(e):
            raise UploadError(f"{_name(path)}: shorter than one frame at {fps:g} fps") from None
        raise UploadError(f"{_name(path)}: the {what} (zero length)") from None
    except AVDecodeError as e:
        raise UploadError(f"{_name(path)}: decoding failed ({str(e).split(': ', 1)[-1]}); the file may be "
                          "corrupt") from None


def read_video_frames(path: str | os.PathLike, fps: float, size: int | None, max_seconds: float | None = None,
                      ) -> np.ndarray:
    """Decode the video stream only: (F, H, W, 3) uint8 at `fps` (frame selection), centre-cropped to size.

    Reads at most `max_seconds` from the first frame (None: the whole stream).
    """
    return _read(path, ("video",), fps, size, None, max_seconds).video


def read_audio_track(path: str | os.PathLike, rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Decode the audio stream only, resampled to `rate` and down-mixed to mono (the channel mean, as the
    training data): (T,) float32 in [-1, 1], at most `max_seconds` from its start."""
    return _read(path, ("audio",), None, None, int(rate), max_seconds).audio


def condition_video(path, model_config, limits: UploadLimits) -> np.ndarray:
    """A video upload as the model's video: (F, H, W, 3) uint8, the first F frames at the model's fps."""
    cfg = model_config
    check_media(path, limits, need_video=True, need_audio=False, what="video")
    frames = read_video_frames(path, cfg.fps, cfg.video_size, max_seconds=cfg.duration)
    if len(frames) < cfg.video_frames:
        raise UploadError(f"{_name(path)}: {len(frames) / cfg.fps:.2f} s of video, the model needs "
                          f"{cfg.duration:.2f} s ({cfg.video_frames} frames at {cfg.fps} fps)")
    return frames[:cfg.video_frames]


def condition_audio(path, model_config, limits: UploadLimits) -> np.ndarray:
    """An audio (or video-with-sound) upload as the model's audio: (T,) float32, the first T samples."""
    cfg = model_config
    check_media(path, limits, need_video=False, need_audio=True, what="audio file")
    audio = read_audio_track(path, cfg.audio_rate, max_seconds=cfg.duration)
    if len(audio) < cfg.audio_samples:
        raise UploadError(f"{_name(path)}: {len(audio) / cfg.audio_rate:.2f} s of audio, the model needs "
                          f"{cfg.duration:.2f} s")
    return audio[:cfg.audio_samples]


def condition_tensor(modality: str, value: np.ndarray):
    """A decoded condition (condition_video / condition_audio) in the model's layout, batch of one:
    uint8 (F, H, W, 3) -> video (1, F, 3, H, W) in [-1, 1]; float (T,) -> audio (1, 1, T) (torch tensors)."""
    import torch

    from mmdiff.data.pixels import frames_to_model

    if modality == "video":
        return frames_to_model(value).unsqueeze(0)
    return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)).view(1, 1, -1)


def read_for_view(path, limits: UploadLimits, fps: float = 10.0, size: int = 64, audio_rate: int = 16_000,
                  max_seconds: float = 10.0) -> AVClip:
    """Any clip for the spectrogram view: an AVClip of (video (F, size, size, 3) uint8 or None, audio (T,) or
    None), each stream read on its own (a silent video, an audio file). At most `max_seconds` are read: the
    view is for short clips."""
    info = check_media(path, limits, need_video=False, need_audio=False)
    video = read_video_frames(path, fps, size, max_seconds) if info.has_video else None
    audio = read_audio_track(path, audio_rate, max_seconds) if info.has_audio else None
    return AVClip(video, audio, fps, audio_rate, _name(path))
