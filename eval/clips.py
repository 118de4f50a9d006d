"""Reading audio-video clips for evaluation (PyAV), at their native frame rate, size and sample rate.

Writing clips is `mmdiff.data.av_io.write_clip` (one writer for the project).

A clip in memory is `Clip(video uint8 (F, H, W, 3), audio float32 (T,) mono in [-1, 1] or None,
fps, audio_rate)`. `read_clip` takes the first `frames` frames and the audio that covers them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Clip:
    video: np.ndarray            # (F, H, W, 3) uint8
    audio: np.ndarray | None     # (T,) float32 mono in [-1, 1], None if the file has no audio stream
    fps: float
    audio_rate: int | None
    name: str = ""
    damage: str = ""             # what decoding skipped in a damaged file (mmdiff.data.av_io.Dropped), "" if none


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


def read_clip(path: str | Path, frames: int | None = None, with_audio: bool = True) -> Clip:
    """First `frames` frames (all if None) of a video file and the audio covering them (at its own rate,
    mean over channels: mmdiff.data.av_io.decode_audio, the training data's down-mix). Undecodable packets
    are skipped as ffmpeg does (mmdiff.data.av_io.decode_frames) and said in `Clip.damage`."""
    import av

    from mmdiff.data.av_io import AVDecodeError, DecodeTally, decode_audio, decode_frames

    path = Path(path)
    try:
        container = av.open(str(path))
    except Exception as e:  # noqa: BLE001 - PyAV raises many types; say which file failed
        raise ClipError(f"cannot open {path}: {e}") from e
    with container:
        if not container.streams.video:
            raise ClipError(f"{path} has no video stream")
        vstream = container.streams.video[0]
        fps = float(vstream.average_rate or vstream.guessed_rate or 0)
        if fps <= 0:
            raise ClipError(f"{path}: cannot tell its frame rate")
        imgs, tally = [], DecodeTally(str(path))
        try:
            for frame in decode_frames(container, (vstream,), tally):
                imgs.append(frame.to_ndarray(format="rgb24"))
                if frames is not None and len(imgs) == frames:
                    break
            tally.check("video")
            if not imgs or (frames is not None and len(imgs) < frames):
                raise ClipError(f"{path} has {len(imgs)} frames; {frames} are needed")
            video = np.stack(imgs)                                       # (F, H, W, 3)
            audio, rate = None, None
            if with_audio and container.streams.audio:
                container.seek(0)
                audio, rate = decode_audio(container, container.streams.audio[0], max_seconds=len(imgs) / fps,
                                           tally=tally)
        except AVDecodeError as e:
            raise ClipError(str(e)) from e
        except av.FFmpegError as e:                                  # frame conversion of odd formats
            raise ClipError(f"cannot decode {path}: {e}") from e
    return Clip(video, audio, fps, rate, path.name, damage=tally.dropped().describe())


def resize_frames(video: np.ndarray, size: int) -> np.ndarray:
    """uint8 (F, H, W, 3) -> (F, size, size, 3): centre crop to a square, antialiased bicubic; the training
    data's resize (mmdiff.data.av_io.resize_frame), so real clips look like what the model learned from."""
    from mmdiff.data.av_io import resize_frame

    if video.shape[1:3] == (size, size):
        return video
    return np.stack([resize_frame(frame, size, mode="crop") for frame in video])
