"""Clip sampling, probing, export and gold variants of eval.study.media, on tiny clips made here."""
import av
import numpy as np
import pytest
from study_fixtures import make_clips_dir, write_clip

from eval.study.media import ClipError, clip_id, export_clip, make_gold_clip, probe_clip, sample_clips


def _decode(path):
    """(frames (F, H, W, 3) uint8, audio (N,) float) of a clip."""
    with av.open(str(path)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray().astype(np.float64).reshape(-1) for f in c.decode(audio=0)])
    return frames, audio


def test_export_copies_h264_and_transcodes_others(tmp_path):
    mp4 = probe_clip(write_clip(tmp_path / "a.mp4"))
    avi = probe_clip(write_clip(tmp_path / "b.avi"))
    mkv = probe_clip(write_clip(tmp_path / "c.mkv"))
    assert mp4.browser_ready and not avi.browser_ready and not mkv.browser_ready
    assert export_clip(mp4, tmp_path / "out" / "a.mp4") == "copied"
    assert export_clip(avi, tmp_path / "out" / "b.mp4") == "transcoded"
    assert export_clip(mkv, tmp_path / "out" / "c.mp4") == "transcoded"
    for name in "abc":
        info = probe_clip(tmp_path / "out" / f"{name}.mp4")
        assert (info.video_codec, info.audio_codec, info.pix_fmt) == ("h264", "aac", "yuv420p")
        assert info.browser_ready and abs(info.duration - 0.8) < 0.1
    # copy keeps the frames bit-exact; the transcode keeps the picture close
    src, _ = _decode(tmp_path / "a.mp4")
    out, _ = _decode(tmp_path / "out" / "a.mp4")
    assert np.array_equal(src, out)
    src_b, _ = _decode(tmp_path / "b.avi")
    out_b, aud_b = _decode(tmp_path / "out" / "b.mp4")
    assert src_b.shape == out_b.shape and np.abs(src_b.astype(int) - out_b).mean() < 20
    assert np.abs(aud_b).max() > 0.1            # the sine tone survived
    # no temp files left beside the outputs
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mp4", "b.mp4", "c.mp4"]


def test_export_strips_metadata(tmp_path):
    src = write_clip(tmp_path / "a.mp4")
    tagged = tmp_path / "tagged.mp4"
    import subprocess

    import imageio_ffmpeg
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(src), "-c", "copy",
                    "-metadata", "title=made by SYSTEM-X", str(tagged)], check=True)
    export_clip(probe_clip(tagged), tmp_path / "out.mp4")
    assert b"SYSTEM-X" in tagged.read_bytes()
    assert b"SYSTEM-X" not in (tmp_path / "out.mp4").read_bytes()


def test_unusable_clips_are_skipped_with_reasons(tmp_path):
    d = make_clips_dir(tmp_path, "clips", 3)
    write_clip(d / "silent.mp4", audio=False)
    (d / "broken.mp4").write_bytes(b"not a video at all" * 10)
    (d / "notes.txt").write_text("ignored: not a clip")
    with pytest.raises(ClipError, match="no audio track"):
        probe_clip(d / "silent.mp4")
    with pytest.raises(ClipError, match="cannot be read"):
        probe_clip(d / "broken.mp4")
    chosen, skipped = sample_clips(d, 3, seed=0, label="real")
    assert sorted(c.path.name for c in chosen) == ["clip000.mp4", "clip001.mp4", "clip002.mp4"]
    # probing stops once 3 usable clips are found; the unusable ones met on the way are reported
    assert {s.split(":")[0].rsplit("/", 1)[1] for s in skipped} <= {"broken.mp4", "silent.mp4"}
    with pytest.raises(ClipError, match=r"asked for 4 clips but .* has only 3 usable \(5 video files, 2 skipped") as e:
        sample_clips(d, 4, seed=0, label="real")
    assert "broken.mp4" in str(e.value) and "silent.mp4: no audio track" in str(e.value)
    with pytest.raises(ClipError, match="does not exist"):
        sample_clips(tmp_path / "nope", 1, 0, "real")


def test_sampling_is_seeded_and_ids_are_stable_and_anonymous(tmp_path):
    d = make_clips_dir(tmp_path, "clips", 8)
    a = [c.path.name for c in sample_clips(d, 4, 7, "ours")[0]]
    b = [c.path.name for c in sample_clips(d, 4, 7, "ours")[0]]
    c = [c.path.name for c in sample_clips(d, 4, 8, "ours")[0]]
    assert a == b and a != c and len(set(a)) == 4
    i = clip_id(7, "ours", "clip001.mp4")
    assert i == clip_id(7, "ours", "clip001.mp4") and len(i) == 12 and int(i, 16) >= 0
    assert len({i, clip_id(8, "ours", "clip001.mp4"), clip_id(7, "real", "clip001.mp4"),
                clip_id(7, "ours", "clip002.mp4")}) == 4
    assert "ours" not in i


def test_gold_variants_are_broken(tmp_path):
    info = probe_clip(write_clip(tmp_path / "a.mp4"))
    src_frames, src_audio = _decode(tmp_path / "a.mp4")
    for variant in ("video_noise", "audio_noise", "both_noise"):
        make_gold_clip(info, variant, tmp_path / f"{variant}.mp4", seed=1)
        g = probe_clip(tmp_path / f"{variant}.mp4")
        assert g.browser_ready and (g.width, g.height) == (32, 32) and abs(g.duration - 0.8) < 0.1
    vn_frames, vn_audio = _decode(tmp_path / "video_noise.mp4")
    an_frames, an_audio = _decode(tmp_path / "audio_noise.mp4")
    # video noise: frames unlike the source, no two frames alike; audio still the tone
    assert np.abs(vn_frames[0].astype(int) - src_frames[0]).mean() > 40
    assert np.abs(vn_frames[0].astype(int) - vn_frames[1]).mean() > 20
    # audio noise: frames kept, audio loud and white (no dominant frequency, unlike the sine)
    assert np.abs(an_frames[0].astype(int) - src_frames[0]).mean() < 20
    spec = np.abs(np.fft.rfft(an_audio[:8192]))
    assert np.sqrt((an_audio ** 2).mean()) > 0.2 and spec.max() / spec.mean() < 20
    src_spec = np.abs(np.fft.rfft(src_audio[:8192]))
    assert src_spec.max() / src_spec.mean() > 20
    with pytest.raises(ValueError, match="unknown gold variant"):
        make_gold_clip(info, "blur", tmp_path / "x.mp4", 0)
