"""Text conditioning end to end through the CLIs: mmdiff.train --text-cond on a tiny synthetic cache (its
captions come from the cache), then mmdiff.sample --prompt (and --two-step) writes mp4s and records the
prompt; a prompt for a model trained without text is a clear error."""
import csv
import json

import av
import pytest
import torch

from mmdiff import sample
from mmdiff.checkpoint import load_checkpoint, save_checkpoint
from mmdiff.config import TINY, DiffusionConfig
from mmdiff.data import synthetic
from mmdiff.train import main as train_main
from mmdiff.train import parse_args


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn")
    synthetic.main(["--out", str(out), "--num", "3", "--seed", "0", "--preset", "tiny", "--cache", "--quiet"])
    return out


@pytest.fixture(scope="module")
def text_run(cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "text"
    assert train_main(["--data", str(cache), "--out", str(out), "--preset", "tiny", "--steps", "2", "--batch-size", "2",
                       "--preview-every", "0", "--log-every", "1", "--workers", "0", "--clips-per-item", "1",
                       "--text-cond", "--caption-dropout", "0.5"]) == 0
    return out


def test_text_cond_run_saves_a_text_model(text_run):
    with open(text_run / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2] and all(float(r["loss"]) > 0 for r in rows)
    ckpt = load_checkpoint(text_run / "last.pt")
    assert ckpt["model_config"]["text_dim"] == 384 and ckpt["model_config"]["text_encoder"] == "all-MiniLM-L6-v2"
    assert ckpt["train_args"]["text_cond"] is True and ckpt["train_args"]["caption_dropout"] == 0.5
    assert any(k.startswith("text_mlp.") for k in ckpt["ema"])


def test_prompt_and_two_step_sampling_write_mp4s(text_run, tmp_path):
    out = tmp_path / "two"
    prompt = "a red ball bounces twice; each bounce makes a high click"
    assert sample.main(["--ckpt", str(text_run / "last.pt"), "--num", "2", "--batch-size", "2", "--out", str(out),
                        "--sampler", "ddim", "--steps", "2", "--prompt", prompt, "--guidance-scale", "3",
                        "--two-step"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["prompt"] == prompt and manifest["guidance_scale"] == 3.0
    assert manifest["two_step"] == {"guidance": "replacement", "scale": 1.0}      # trained without --cond-prob
    assert manifest["samples"] == ["sample_000000", "sample_000001"]
    for name in manifest["samples"]:
        with av.open(str(out / f"{name}.mp4")) as c:
            assert c.streams.video[0].frames == 16 and c.streams.audio[0].rate == 8000
        assert (out / f"{name}.wav").is_file()


def test_caption_branch_only_trains_the_text_mlp_and_nothing_else(text_run, cache, tmp_path):
    """--init-from a text run --caption-branch-only --min-t 300: every weight outside the caption branch stays the
    source's EMA bit for bit (in the weights and the EMA), the caption branch moves, and the run records how."""
    out = tmp_path / "captions"
    assert train_main(["--data", str(cache), "--out", str(out), "--preset", "tiny", "--steps", "2", "--batch-size", "2",
                       "--preview-every", "0", "--log-every", "1", "--workers", "0", "--clips-per-item", "1",
                       "--text-cond", "--caption-dropout", "0.2", "--caption-branch-only", "--min-t", "300",
                       "--lr", "1e-2", "--ema", "0.5", "--init-from", str(text_run / "last.pt")]) == 0
    src, ft = load_checkpoint(text_run / "last.pt")["ema"], load_checkpoint(out / "last.pt")
    for part in ("model", "ema"):
        for name, tensor in ft[part].items():
            if not name.startswith("text_mlp."):
                assert torch.equal(tensor, src[name]), f"{part} {name}"
    assert not torch.equal(ft["model"]["text_mlp.2.weight"], src["text_mlp.2.weight"])
    assert ft["train_args"]["train.trainable"] == "text" and ft["train_args"]["min_t"] == 300
    assert ft["train_args"]["init_steps"] == 2
    # the null caption's output still moves with the branch (benchmarks.null_caption_drift measures how far)
    from benchmarks.bench_frame_errors import clips
    from benchmarks.null_caption_drift import drift
    from mmdiff.checkpoint import load_model

    run, source = load_model(out / "last.pt"), load_model(text_run / "last.pt")
    video, audio = clips(run[0].config, 2, 99)
    assert all(r["video"] == r["audio"] == r["video_x0"] == 0 for r in drift((source, source), video, audio, [10, 900]))
    assert all(r["video"] > 0 and r["audio"] > 0 for r in drift((run, source), video, audio, [10, 900]))
    import mmdiff
    from mmdiff.training.loop import trainable_parameters
    with pytest.raises(ValueError, match="no caption branch"):                # the API refuses a model without one
        trainable_parameters(mmdiff.build_model(TINY), "text")


def test_prompt_needs_a_text_model(tmp_path, capsys):
    import mmdiff

    ckpt = save_checkpoint(tmp_path / "plain.pt", model_config=TINY, diffusion_config=DiffusionConfig(), model=None,
                           ema=mmdiff.build_model(TINY).state_dict())
    assert sample.main(["--ckpt", str(ckpt), "--num", "1", "--out", str(tmp_path / "o"), "--prompt", "a dog"]) == 2
    assert "trained without text conditioning" in capsys.readouterr().err
    assert not (tmp_path / "o" / "manifest.json").exists()


@pytest.mark.parametrize("flags, match", [
    (["--captions", "caps.csv"], "need --text-cond"),
    (["--text-cond", "--caption-dropout", "1.5"], "--caption-dropout must be in"),
    (["--caption-branch-only"], "need --text-cond"),
    (["--text-cond", "--min-t", "1000"], "--min-t must be in [0, 1000)"),
    (["--text-cond", "--min-t", "-5"], "--min-t must be in [0, 1000)"),
])
def test_bad_text_flags_are_refused(flags, match, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--data", "d", "--out", "o", *flags])
    assert match in capsys.readouterr().err


def test_two_step_refuses_another_condition(capsys):
    with pytest.raises(SystemExit):
        sample.parse_args(["--out", "o", "--two-step", "--condition-video", "x.mp4"])
    assert "--two-step generates its own video" in capsys.readouterr().err


def test_captions_flag_overrides_the_cache_captions(cache, tmp_path):
    import torch

    from mmdiff.data.dataset import AVClipDataset
    from mmdiff.text.encoder import TextEncoder
    from mmdiff.train import captioned

    sidecar = tmp_path / "caps.csv"
    sidecar.write_text("item,caption\nclip_00001,a violin plays a long note\n")
    args = parse_args(["--data", str(cache), "--out", "o", "--text-cond", "--captions", str(sidecar)])
    ds = captioned(AVClipDataset(cache, model_config=TINY, clips_per_item=1), args, torch.device("cpu"))
    assert ds.captions[1] == "a violin plays a long note" and ds.captions[0].startswith("a ")   # others: meta
    torch.testing.assert_close(ds[1][2], TextEncoder().encode("a violin plays a long note")[0])
