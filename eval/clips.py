"""Clip files for evaluation: listing them and reading the first frames of each, through the project's one
reader (`mmdiff.data.av_io.read_av`) into its one clip type (`mmdiff.data.av_io.AVClip`).

A clip is read at its own frame rate, size and sample rate: `read_clip` takes the first `frames` frames and
the audio that covers them (on the video's clock, the channel mean, as the training data).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from mmdiff.data.av_io import AVClip


class ClipError(ValueError):
    """A clip file cannot be used; the message names the file and what was expected."""


def list_clips(folder: str | Path) -> list[Path]:
    """Video files directly in `folder` (mmdiff.data.av_io.list_videos), sorted; a clear error if none."""
    from mmdiff.data.av_io import VIDEO_EXTENSIONS, list_videos

    try:
        files = list_videos(folder)
    except NotADirectoryError as e:
        raise ClipError(f"clip folder {e}") from e
    if not files:
        raise ClipError(f"no video clips ({', '.join(VIDEO_EXTENSIONS)}) in {folder}")
    return files


def read_clip(path: str | Path, frames: int | None = None, with_audio: bool = True) -> AVClip:
    """First `frames` frames (all if None) of a video file at its own rate and size, and, with `with_audio`,
    the audio covering them at its own rate (None when the file has no audio stream)."""
    from mmdiff.data.av_io import MediaError, probe, read_av

    path = Path(path)
    try:
        info = probe(path)
        if not info.has_video:
            raise ClipError(f"{path} has no video stream")
        if info.fps <= 0:
            raise ClipError(f"{path}: cannot tell its frame rate")
        streams = ("video", "audio") if with_audio and info.has_audio else ("video",)
        window = None if frames is None else frames / info.fps
        clip = read_av(path, info.fps, None, None, duration=window, streams=streams)
        if frames is not None and clip.num_frames < frames and clip.audio is not None:
            clip = _pad_short_audio(path, clip, frames, info.fps)
    except MediaError as e:
        raise ClipError(f"cannot read {path}: {e}") from e
    if frames is not None and clip.num_frames < frames:
        raise ClipError(f"{path} has {clip.num_frames} frames; {frames} are needed")
    return clip


def _pad_short_audio(path: Path, clip: AVClip, frames: int, fps: float) -> AVClip:
    """A file whose audio ends before its first `frames` frames do: those frames, and the audio zero-padded to
    span them (as the released MM-Diffusion evaluator pads short audio). read_av keeps only the frames both
    streams cover; the video is read again alone."""
    from mmdiff.data.av_io import read_av

    video = read_av(path, fps, None, None, duration=frames / fps, streams=("video",)).video
    if len(video) < frames:
        return clip
    need = round(frames * clip.audio_rate / fps)
    return replace(clip, video=video[:frames], audio=np.pad(clip.audio, (0, max(0, need - clip.audio.size))))


def resize_clip(clip: AVClip, size: int, mode: str = "crop") -> AVClip:
    """The clip with its frames resized to (size, size) by `resize_frames`."""
    return replace(clip, video=resize_frames(clip.video, size, mode))


def resize_frames(video: np.ndarray, size: int, mode: str = "crop") -> np.ndarray:
    """uint8 (F, H, W, 3) -> (F, size, size, 3): centre crop to a square (or letterbox: the whole frame with
    black bars), antialiased bicubic; the training data's resize (mmdiff.data.av_io.resize_frame)."""
    from mmdiff.data.av_io import resize_frame

    if video.shape[1:3] == (size, size):
        return video
    return np.stack([resize_frame(frame, size, mode=mode) for frame in video])
