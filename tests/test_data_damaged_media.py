"""Damaged media are decoded as ffmpeg decodes them: an undecodable packet is skipped, counted and reported,
and a file fails (naming itself) only when too much of a stream is lost.

Files: an avi (MPEG-4 video + AC-3 audio) written here with PyAV and damaged by zeroing the start of one (or
many) packets; and Debian's opencv-doc Megamind.avi (720x528, AC-3 stereo 48 kHz), whose first AC-3 packet
does not decode (.ci/run installs opencv-doc). The frame counts are compared with ffmpeg's own decode
(imageio-ffmpeg's binary, `-f framecrc`), not with numbers this project made.
"""
from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from data_media import pattern_frames, tone_signal, write_source
from mmdiff.config import PRESETS
from mmdiff.data import prepare as prep
from mmdiff.data.av_io import (MAX_BAD_PACKET_FRACTION, AVDecodeError, DecodeTally, decode_frames, read_av)
from mmdiff.uploads import UploadError, UploadLimits, condition_audio, condition_video

MEGAMIND = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")
TINY = PRESETS["tiny"]
LIMITS = UploadLimits()


def megamind() -> Path:
    assert MEGAMIND.is_file(), (f"{MEGAMIND} is missing: install Debian's opencv-doc "
                                "(apt-get install opencv-doc; .ci/run does)")
    return MEGAMIND


def ffmpeg_frame_counts(path: Path) -> dict[str, int]:
    """Frames ffmpeg decodes per stream type (it skips undecodable packets and goes on)."""
    import imageio_ffmpeg

    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "quiet", "-i", str(path), "-f", "framecrc", "-"],
                         capture_output=True, text=True, check=True).stdout
    with av.open(str(path)) as c:
        kinds = {s.index: s.type for s in c.streams}
    return dict(Counter(kinds[int(line.split(",")[0])] for line in out.splitlines()
                        if line and not line.startswith("#")))


def our_frame_counts(path: Path) -> tuple[dict[str, int], DecodeTally]:
    tally = DecodeTally(str(path))
    with av.open(str(path)) as c:
        counts = Counter(f"{'video' if isinstance(f, av.VideoFrame) else 'audio'}"
                         for f in decode_frames(c, (c.streams.video[0], c.streams.audio[0]), tally))
    return dict(counts), tally


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """3 s: 30 MPEG-4 frames at 10 fps, AC-3 stereo 48 kHz (94 packets of 1,536 samples) in avi."""
    path = tmp_path_factory.mktemp("damaged") / "clean.avi"
    return write_source(path, pattern_frames(30, 48, 64), Fraction(10), tone_signal(3 * 48000, 48000, 2), 48000,
                        vcodec="mpeg4", acodec="ac3")


def damaged(clean: Path, out: Path, kind: str, which: list[int]) -> Path:
    """A copy of `clean` with the first 64 bytes of its `which` `kind` packets zeroed."""
    with av.open(str(clean)) as c:
        packets = [(p.pos, p.size) for p in c.demux() if p.size and p.stream.type == kind]
    data = bytearray(clean.read_bytes())
    for i in which:
        pos, size = packets[i]
        data[pos:pos + min(size, 64)] = bytes(min(size, 64))
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("kind, which", [("audio", [3]), ("video", [5])])
def test_one_bad_packet_is_skipped_like_ffmpeg(clean, tmp_path, kind, which):
    path = damaged(clean, tmp_path / f"bad_{kind}.avi", kind, which)
    ours, tally = our_frame_counts(path)
    assert ours == ffmpeg_frame_counts(path)                      # the frames ffmpeg decodes, no more, no less
    assert tally.bad == {"video": int(kind == "video"), "audio": int(kind == "audio")}
    clip = read_av(path, fps=10, size=32, audio_rate=16000)       # used to raise AVDecodeError
    assert clip.num_frames == 30 and clip.audio.size == 30 * 1600
    assert getattr(clip.dropped, kind) == 1 and clip.dropped.describe().startswith(f"skipped 1 of ")


def test_skipped_audio_becomes_silence_in_place(clean, tmp_path):
    """Audio after a skipped packet stays on the video's clock (a gap of silence, not a shift)."""
    good = read_av(clean, fps=10, size=32, audio_rate=16000).audio
    path = damaged(clean, tmp_path / "bad.avi", "audio", [40])    # at 1.25 s; ffmpeg loses 2 frames (64 ms) there
    bad = read_av(path, fps=10, size=32, audio_rate=16000).audio
    assert bad.shape == good.shape
    assert np.abs(bad[:19500] - good[:19500]).max() < 0.02         # before the damage: unchanged
    assert np.abs(bad[20000:20900]).max() < 1e-6 < 0.05 < np.abs(good[20000:20900]).max()   # lost: silence
    tail = slice(21500, 3 * 16000)                                 # after it: in place, not shifted by 64 ms
    assert np.abs(bad[tail] - good[tail]).max() < 0.02 < np.abs(good[tail]).max()


def test_too_many_bad_packets_fail_naming_the_file(clean, tmp_path):
    n_bad = int(94 * MAX_BAD_PACKET_FRACTION) + 6
    path = damaged(clean, tmp_path / "wrecked.avi", "audio", list(range(3, 3 + 2 * n_bad, 2)))
    with pytest.raises(AVDecodeError, match=r"wrecked\.avi: \d+ of \d+ audio packets are undecodable"):
        read_av(path, fps=10, size=32, audio_rate=16000)
    with pytest.raises(UploadError, match=r"^wrecked\.avi: \d+ of \d+ audio packets are undecodable"):
        condition_audio(path, TINY, LIMITS)


def test_megamind_decodes_as_ffmpeg_does():
    path = megamind()
    ours, tally = our_frame_counts(path)
    assert ours == ffmpeg_frame_counts(path) == {"video": 270, "audio": 351}
    assert tally.bad == {"video": 0, "audio": 1}
    clip = read_av(path, fps=10, size=64, audio_rate=16000)
    assert clip.num_frames == 112 and clip.audio.size == 112 * 1600
    assert clip.dropped.audio == 1 and clip.dropped.audio_read == 352
    assert np.abs(clip.audio[1600:]).max() > 0.05                  # real sound after the skipped first packet


def test_megamind_everywhere(tmp_path, capsys):
    """prepare keeps it (with a notice), the upload readers and eval's clip reader take it."""
    src = tmp_path / "raw"
    src.mkdir()
    shutil.copy(megamind(), src / "Megamind.avi")
    assert prep.main(["--src", str(src), "--out", str(tmp_path / "cache"), "--preset", "tiny", "--quiet"]) == 0
    summary = capsys.readouterr().out
    assert "kept 1 sources" in summary and "decoded past damage in 1 kept sources" in summary
    assert "Megamind.avi: skipped 1 of 352 audio packets" in summary

    notices: list[str] = []
    assert condition_audio(megamind(), TINY, LIMITS, notices=notices).shape == (TINY.audio_samples,)
    assert condition_video(megamind(), TINY, LIMITS, notices=notices).shape[0] == TINY.video_frames
    assert notices == ["Megamind.avi is damaged: skipped 1 of 53 audio packets (undecodable: InvalidDataError: "
                       "Invalid data found when processing input); decoded past it as ffmpeg does"]

    from eval.clips import read_clip

    clip = read_clip(megamind(), frames=16)
    assert clip.video.shape == (16, 528, 720, 3) and clip.audio.size > 0 and "1 of" in clip.dropped.describe()


def test_a_file_cut_short_is_noted_against_its_header(tmp_path):
    """An mp4 whose index is at the front (+faststart) but whose data was cut at 60% decodes to what is there, as
    ffmpeg does, and the notice says so: where it ends against the length its header announces. The whole file,
    and a window that stops before the cut, carry no such note."""
    import imageio_ffmpeg

    src = write_source(tmp_path / "src.mp4", pattern_frames(30, 48, 64), Fraction(10), tone_signal(3 * 48000, 48000, 2),
                       48000)
    whole = tmp_path / "whole.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(src), "-c", "copy", "-movflags",
                    "+faststart", str(whole)], check=True)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:int(len(data) * 0.6)])
    clip = read_av(cut, 10, 32, 8000)
    frames = ffmpeg_frame_counts(cut)["video"]
    assert clip.num_frames <= frames < 30
    assert f"the file ends at {clip.dropped.ended_at:.2f} s of the 3.00 s its header announces" in clip.dropped.describe()
    assert 1.0 < clip.dropped.ended_at < 2.5
    assert not read_av(whole, 10, 32, 8000).dropped
    assert not read_av(cut, 10, 32, 8000, duration=0.5).dropped.ended_at
