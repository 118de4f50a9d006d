"""prepare: cache building from a folder with good and bad files, segments, resume, config checks."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from data_media import pattern_frames, tone_signal, write_source
from mmdiff.config import PAPER, TINY
from mmdiff.data import prepare as prep
from mmdiff.data.av_io import read_av
from mmdiff.data.cache import (CacheConfigMismatch, CacheError, CacheSpec, int16_to_audio, load_config_check,
                               load_index, open_audio, open_video)

SPEC = CacheSpec(fps=10, video_size=(32, 32), audio_rate=8000)


def _good(path: Path, seconds: float, fps=Fraction(25), rate=44100, hw=(36, 48), **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = round(seconds * fps)
    return write_source(path, pattern_frames(n, *hw), fps, tone_signal(round(seconds * rate), rate, 2),
                        rate, **kw)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """A raw folder: three good videos (one nested), a broken, an audio-less and a too-short one."""
    root = tmp_path_factory.mktemp("raw")
    _good(root / "a.mp4", 2.0)
    _good(root / "sub" / "b.mkv", 3.0, vcodec="ffv1", pix_fmt="yuv444p", acodec="flac")
    _good(root / "sub" / "deeper" / "c.mov", 1.7, fps=Fraction(30000, 1001), rate=48000,
          vcodec="mpeg4", acodec="pcm_s16le")
    _good(root / "short.mp4", 1.0)
    (root / "broken.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 3000, np.uint8).tobytes())
    write_source(root / "mute.mp4", pattern_frames(20, 32, 32), Fraction(10), None, 8000)
    (root / "notes.txt").write_text("not a video")
    return root


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_prepare_keeps_good_and_reports_bad(raw, tmp_path, capsys):
    out = tmp_path / "cache"
    assert prep.main(["--src", str(raw), "--out", str(out), "--preset", "tiny", "--quiet"]) == 0
    summary = capsys.readouterr().out
    index = load_index(out)
    assert index.spec == SPEC
    status = {rel: (r["status"], r["reason"]) for rel, r in index.sources.items()}
    assert status == {
        "a.mp4": ("kept", ""), "sub/b.mkv": ("kept", ""), "sub/deeper/c.mov": ("kept", ""),
        "broken.mp4": ("skipped", "unreadable"), "mute.mp4": ("skipped", "no audio track"),
        "short.mp4": ("skipped", "too short")}
    assert "broken.mp4" in index.sources["broken.mp4"]["detail"]
    for text in ("kept 3 sources -> 3 items", "skipped 1 sources: no audio track",
                 "skipped 1 sources: unreadable", "skipped 1 sources: too short", "mute.mp4"):
        assert text in summary
    frames = {i.source: i.frames for i in index.items}
    assert frames == {"a.mp4": 20, "sub/b.mkv": 30, "sub/deeper/c.mov": 17}
    for item in index.items:
        v, a = open_video(out, item), open_audio(out, item)
        assert v.shape == (item.frames, 32, 32, 3) and v.dtype == np.uint8
        assert a.shape == (item.frames * 800,) and a.dtype == np.int16
    # the cache holds exactly what a direct decode gives
    item = next(i for i in index.items if i.source == "sub/b.mkv")
    clip = read_av(raw / "sub" / "b.mkv", 10, 32, 8000)
    np.testing.assert_array_equal(open_video(out, item), clip.video)
    np.testing.assert_allclose(int16_to_audio(open_audio(out, item)), clip.audio, atol=1 / 32767)


def test_segments_skip_head_and_cut(raw, tmp_path):
    src = tmp_path / "long"
    _good(src / "long.mkv", 5.0, vcodec="ffv1", pix_fmt="yuv444p", acodec="flac")
    out = tmp_path / "cache"
    settings = prep.PrepareSettings(segment_seconds=1.6, skip_head=1.0, min_seconds=1.6)
    index = prep.prepare(src, out, SPEC, settings, progress=False)
    assert [(i.frames, i.start_seconds) for i in index.items] == [(16, 1.0), (16, 2.6)]   # 4.2..5 dropped
    clip = read_av(src / "long.mkv", 10, 32, 8000)
    for item, s in zip(index.items, (10, 26)):
        np.testing.assert_array_equal(open_video(out, item), clip.video[s:s + 16])
        np.testing.assert_allclose(int16_to_audio(open_audio(out, item)), clip.audio[s * 800:(s + 16) * 800],
                                   atol=1 / 32767)
    assert prep.segment_frames(100, 10, prep.PrepareSettings(segment_seconds=3.4, skip_head=1.0)) == [
        (10, 34), (44, 34)]
    assert prep.segment_frames(15, 10, prep.PrepareSettings(min_seconds=1.6)) == []


def test_interrupted_run_resumes_to_the_same_cache(raw, tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    prep.prepare(raw, clean, SPEC, progress=False)

    out = tmp_path / "resumed"
    real, calls = prep.process_source, []

    def crash_on_third(path, rel, *args):
        calls.append(rel)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated interruption")
        return real(path, rel, *args)

    monkeypatch.setattr(prep, "process_source", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(raw, out, SPEC, progress=False)
    first = list(calls)
    assert len(load_index(out).sources) == 2                 # two sources were recorded before the crash
    (out / "items" / "orphan-0000.video.npy").write_bytes(b"left by a crashed writer")

    calls.clear()
    monkeypatch.setattr(prep, "process_source", lambda *a: (calls.append(a[1]), real(*a))[1])
    prep.prepare(raw, out, SPEC, progress=False)
    all_rels = {p.relative_to(raw).as_posix() for p in prep.find_videos(raw)}
    assert sorted(calls) == sorted(all_rels - set(first[:2]))  # done sources were not decoded again
    assert _snapshot(out) == _snapshot(clean)

    calls.clear()
    prep.prepare(raw, out, SPEC, progress=False)             # a finished cache: nothing to do
    assert calls == []


def test_changed_source_is_redone_and_settings_must_match(tmp_path):
    src, out = tmp_path / "src", tmp_path / "cache"
    _good(src / "v.mkv", 2.0, vcodec="ffv1", pix_fmt="yuv444p", acodec="flac")
    prep.prepare(src, out, SPEC, progress=False)
    assert load_index(out).items[0].frames == 20
    _good(src / "v.mkv", 3.0, vcodec="ffv1", pix_fmt="yuv444p", acodec="flac")
    prep.prepare(src, out, SPEC, progress=False)
    (item,) = load_index(out).items
    assert item.frames == 30 and open_video(out, item).shape[0] == 30
    with pytest.raises(CacheError, match="resume with the same flags"):
        prep.prepare(src, out, CacheSpec(fps=10, video_size=(64, 64), audio_rate=16000), progress=False)
    with pytest.raises(CacheError, match="resume with the same flags"):
        prep.prepare(src, out, SPEC, prep.PrepareSettings(segment_seconds=1.6), progress=False)


def test_a_source_deleted_since_leaves_the_cache_and_another_src_is_refused(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "cache"
    for name in ("a", "b", "c"):
        _good(src / f"{name}.mp4", 2.0)
    prep.prepare(src, out, SPEC, progress=False)
    gone = next(i for i in load_index(out).items if i.source == "b.mp4")
    (src / "b.mp4").unlink()
    prep.prepare(src, out, SPEC, progress=False)
    index = load_index(out)
    assert sorted(index.sources) == ["a.mp4", "c.mp4"] and {i.source for i in index.items} == {"a.mp4", "c.mp4"}
    assert not (out / gone.video_file).exists() and not (out / gone.audio_file).exists()
    assert "1 source(s) are no longer under --src" in capsys.readouterr().err
    other = tmp_path / "other"
    _good(other / "x.mp4", 2.0)
    before = _snapshot(out)
    with pytest.raises(CacheError, match=r"holds a cache of 2 sources, and 2 of them .* are not under --src"):
        prep.prepare(other, out, SPEC, progress=False)
    assert _snapshot(out) == before                                  # neither replaced nor mixed
    (src / "a.mp4").unlink()                                         # most of its own sources curated away:
    prep.prepare(src, out, SPEC, progress=False, owned=True)          # the cache train --data made beside src
    assert sorted(load_index(out).sources) == ["c.mp4"]


def test_summary_names_an_empty_file_and_says_each_reason_once(tmp_path):
    src, out = tmp_path / "src", tmp_path / "cache"
    _good(src / "a.mp4", 2.0)
    (src / "zero.mp4").write_bytes(b"")
    write_source(src / "mute.mp4", pattern_frames(20, 32, 32), Fraction(10), None, 8000)
    text = prep.summarize(prep.prepare(src, out, SPEC, progress=False))
    assert "  zero.mp4: empty (0 bytes)" in text
    mute = next(line for line in text.splitlines() if line.startswith("  mute.mp4"))
    assert mute.count("no audio track") == 1 and str(src) not in mute, mute


def test_workers_give_the_same_cache(raw, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    prep.prepare(raw, one, SPEC, workers=1, progress=False)
    prep.prepare(raw, two, SPEC, workers=2, progress=False)
    assert _snapshot(one) == _snapshot(two)


def test_config_check(raw, tmp_path):
    out = tmp_path / "cache"
    prep.prepare(raw, out, SPEC, progress=False)
    assert load_config_check(out, TINY).spec == SPEC
    with pytest.raises(CacheConfigMismatch) as e:
        load_config_check(out, PAPER)
    assert "video size 32x32 vs model 64x64" in str(e.value) and "8000 Hz vs model 16000 Hz" in str(e.value)
    with pytest.raises(CacheConfigMismatch, match="fps 10 vs model 8"):
        load_config_check(out, TINY.replace(fps=8, audio_rate=6400))
    with pytest.raises(CacheError, match="no index.json"):
        load_index(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "index.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(CacheError, match="not an mmdiff-av-cache"):
        load_index(tmp_path / "bad")


def test_cli_rejects_bad_flags(tmp_path, capsys):
    assert prep.main(["--src", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "s").mkdir()
    assert prep.main(["--src", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--fps", "7",
                      "--quiet"]) == 2
    assert "whole multiple of fps" in capsys.readouterr().err
