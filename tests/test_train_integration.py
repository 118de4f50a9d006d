"""Training on a small synthetic cache: the loss falls, kill-and-resume is exact, torchrun with 2 CPU
processes, and sampling writes playable mp4s with a 1.6-s audio track."""
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest
import torch

import mmdiff
from mmdiff.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mmdiff.config import TINY, DiffusionConfig
from mmdiff.data import synthetic
from mmdiff.data.av_io import read_av, read_wav
from mmdiff.data.dataset import AVClipDataset
from mmdiff.diffusion import JointLayout, Schedule
from mmdiff.train import joint_loss_fn, write_previews
from mmdiff.training.distributed import DistInfo
from mmdiff.training.loop import Trainer, TrainConfig

SMALL = TINY.replace(base_channels=8, head_dim=8)          # same data layout as tiny, cheaper to train
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn")
    synthetic.main(["--out", str(out), "--num", "8", "--seed", "0", "--preset", "tiny", "--cache", "--quiet"])
    return out


def trainer(run_dir, cache, steps, resume=False, cfg=SMALL, lr=1e-3, save_every=3, preview_every=10 ** 9,
            init_from=None):
    torch.manual_seed(0)
    ds = AVClipDataset(cache, model_config=cfg, seed=0)
    tcfg = TrainConfig(steps=steps, batch_size=4, lr=lr, ema=0.99, save_every=save_every,
                       preview_every=preview_every, log_every=1, seed=0, workers=0, init_from=init_from)
    return Trainer(run_dir, mmdiff.build_model(cfg), cfg, DiffusionConfig(), ds,
                   joint_loss_fn(JointLayout.from_config(cfg), Schedule()), tcfg,
                   DistInfo(0, 1, 0, torch.device("cpu")), resume=resume, preview_fn=write_previews)


def fixed_loss(model, cache, cfg=SMALL):
    """Loss on fixed clips, timesteps and noise, so before/after compare like with like."""
    ds = AVClipDataset(cache, model_config=cfg, seed=0, flip_prob=0.0)
    video = torch.stack([ds[i][0] for i in range(4)])
    audio = torch.stack([ds[i][1] for i in range(4)])
    fn = joint_loss_fn(JointLayout.from_config(cfg), Schedule())
    with torch.no_grad():
        return float(sum(fn(model, (video, audio), torch.Generator().manual_seed(k))["loss"] for k in range(4)))


def test_a_few_steps_lower_the_loss(tmp_path, cache):
    t = trainer(tmp_path / "run", cache, steps=12, save_every=12, lr=2e-3)
    before = fixed_loss(t.model, cache)
    t.run()
    after = fixed_loss(t.model, cache)
    assert after < 0.9 * before, (before, after)
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,video,audio") and len(rows) == 13
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000


def test_previews_are_written_as_playable_clips(tmp_path, cache):
    trainer(tmp_path / "run", cache, steps=2, save_every=2, preview_every=2).run()
    clips = sorted((tmp_path / "run" / "previews").glob("*.mp4"))
    assert [c.name for c in clips] == ["step0000002_0.mp4", "step0000002_1.mp4"]
    with av.open(str(clips[0])) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.audio


def test_kill_and_resume_reproduces_the_same_state(tmp_path, cache):
    straight = trainer(tmp_path / "a", cache, steps=6)
    straight.run()
    first = trainer(tmp_path / "b", cache, steps=3)
    first.run()                                   # "killed" after the step-3 checkpoint
    resumed = trainer(tmp_path / "b", cache, steps=6, resume=True)
    assert resumed.step == 3
    resumed.run()
    for name, tensor in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    for name, tensor in straight.ema.shadow.items():
        torch.testing.assert_close(resumed.ema.shadow[name], tensor, rtol=0, atol=0, msg=name)
    log = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in log[1:]] == [str(i) for i in range(1, 7)]


def test_resume_keeps_the_runs_learning_rate_unless_lr_is_given(tmp_path, cache):
    trainer(tmp_path / "run", cache, steps=2, save_every=2, lr=2e-3).run()
    kept = trainer(tmp_path / "run", cache, steps=3, save_every=1, resume=True, lr=None)
    assert kept.lr == 2e-3
    kept.run()
    changed = trainer(tmp_path / "run", cache, steps=4, save_every=1, resume=True, lr=5e-4)
    assert changed.lr == 5e-4 and changed.train_args["train.lr"] == 5e-4
    changed.run()
    rates = [r.split(",")[-3] for r in (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]]
    assert [float(x) for x in rates] == [2e-3, 2e-3, 2e-3, 5e-4]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["optimizer"]["param_groups"][0]["lr"] == 5e-4


def test_init_from_starts_a_new_run_from_another_runs_ema(tmp_path, cache):
    trainer(tmp_path / "src", cache, steps=3).run()
    src = load_checkpoint(tmp_path / "src" / "last.pt")
    no_rs = SMALL.replace(random_shift=False)                  # same parameters, different training
    t = trainer(tmp_path / "ft", cache, steps=2, cfg=no_rs, init_from=str(tmp_path / "src" / "last.pt"))
    assert t.step == 0
    for name, tensor in t.model.state_dict().items():
        torch.testing.assert_close(tensor, src["ema"][name], rtol=0, atol=0, msg=name)
    t.run()
    assert load_checkpoint(tmp_path / "ft" / "last.pt")["train_args"]["train.init_from"].endswith("last.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        trainer(tmp_path / "bad", cache, steps=2, cfg=SMALL.replace(base_channels=16, head_dim=16),
                init_from=str(tmp_path / "src" / "last.pt"))


def test_a_fine_tune_counts_the_steps_of_the_runs_it_started_from(tmp_path, cache):
    """src 3 steps -> ft 2 steps (--init-from src) -> ft2 2 steps (--init-from ft), ft2 stopped at 1 and resumed:
    the card of each says how many steps are behind its weights, and a resume keeps the count."""
    from mmdiff.modelcard import read_card, scope_line
    trainer(tmp_path / "src", cache, steps=3).run()
    trainer(tmp_path / "ft", cache, steps=2, init_from=str(tmp_path / "src" / "last.pt")).run()
    trainer(tmp_path / "ft2", cache, steps=1, save_every=1, init_from=str(tmp_path / "ft" / "last.pt")).run()
    trainer(tmp_path / "ft2", cache, steps=2, resume=True).run()
    assert [read_card(tmp_path / r / "last.pt").step for r in ("src", "ft", "ft2")] == [3, 5, 7]
    card = read_card(tmp_path / "ft2" / "last.pt")
    assert card.run_step == 2 and "7 training steps, the last 2 fine-tuning an earlier run" in scope_line(card)
    assert "fine-tuning" not in scope_line(read_card(tmp_path / "src" / "last.pt"))


def test_init_from_an_unconditional_run_starts_a_text_v_run_as_the_same_model(tmp_path, cache):
    """--init-from UNCOND --text-cond --prediction v: the shared weights are the source's EMA, the new caption
    branch keeps its zero last layer, so every caption gives the source's output at step 0."""
    from mmdiff.config import text_config
    trainer(tmp_path / "src", cache, steps=3).run()
    src = load_checkpoint(tmp_path / "src" / "last.pt")
    cfg = text_config(SMALL).replace(prediction="v", inference_shift="zero")   # no random RS-MMA draws
    t = trainer(tmp_path / "ft", cache, steps=2, cfg=cfg, init_from=str(tmp_path / "src" / "last.pt"))
    shared = {k: v for k, v in t.model.state_dict().items() if not k.startswith("text_mlp.")}
    assert set(shared) == set(src["ema"])
    for name, tensor in shared.items():
        torch.testing.assert_close(tensor, src["ema"][name], rtol=0, atol=0, msg=name)
    plain = mmdiff.build_model(SMALL.replace(inference_shift="zero"))
    plain.load_state_dict(src["ema"])
    g = torch.Generator().manual_seed(0)
    video = torch.randn(2, SMALL.video_frames, 3, SMALL.video_size, SMALL.video_size, generator=g)
    audio = torch.randn(2, 1, SMALL.audio_samples, generator=g)
    steps = torch.tensor([10, 900])
    caption = torch.nn.functional.normalize(torch.randn(2, cfg.text_dim, generator=g), dim=-1)
    t.model.eval(), plain.eval()
    with torch.no_grad():
        for got, want in zip(t.model(video, audio, steps, text=caption), plain(video, audio, steps)):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="do not fit"):      # other weights are still refused
        trainer(tmp_path / "bad", cache, steps=2, cfg=text_config(SMALL.replace(base_channels=16, head_dim=16)),
                init_from=str(tmp_path / "src" / "last.pt"))


def test_a_kill_during_a_save_leaves_the_last_checkpoint_intact(tmp_path, cache, monkeypatch):
    t = trainer(tmp_path / "run", cache, steps=3)
    t.run()
    good = (tmp_path / "run" / "last.pt").read_bytes()

    def dying_save(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        t.save()
    assert (tmp_path / "run" / "last.pt").read_bytes() == good
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_resume_guards(tmp_path, cache):
    trainer(tmp_path / "run", cache, steps=3).run()
    with pytest.raises(FileExistsError, match="--resume"):
        trainer(tmp_path / "run", cache, steps=6)
    with pytest.raises(CheckpointError, match="different model config"):
        trainer(tmp_path / "run", cache, steps=6, resume=True, cfg=SMALL.replace(base_channels=16, head_dim=16))


def test_torchrun_two_cpu_processes(tmp_path, cache):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           "-m", "mmdiff.train", "--data", str(cache), "--preset", "tiny", "--out", str(tmp_path / "ddp"),
           "--steps", "2", "--batch-size", "2", "--save-every", "2", "--preview-every", "0", "--log-every", "1",
           "--workers", "0", "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stderr
    ckpt = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ckpt["step"] == 2
    assert len((tmp_path / "ddp" / "log.csv").read_text().splitlines()) == 3   # header + rank 0's 2 rows


def test_sample_cli_writes_playable_mp4s_with_1_6_s_audio(tmp_path):
    model = mmdiff.build_model(TINY)
    save_checkpoint(tmp_path / "m.pt", model_config=TINY, diffusion_config=DiffusionConfig(), model=None,
                    ema=model.state_dict())
    from mmdiff import sample

    assert sample.main(["--ckpt", str(tmp_path / "m.pt"), "--num", "3", "--batch-size", "2", "--out",
                        str(tmp_path / "out"), "--sampler", "ddim", "--steps", "2", "--device", "cpu"]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["samples"] == ["sample_000000", "sample_000001", "sample_000002"]
    assert len(manifest["checkpoint_sha256"]) == 64 and manifest["sampler"] == "ddim"
    for name in manifest["samples"]:
        with av.open(str(tmp_path / "out" / f"{name}.mp4")) as c:
            vs, aus = c.streams.video[0], c.streams.audio[0]
            assert vs.codec_context.name == "h264" and aus.codec_context.name == "aac"
            frames = sum(1 for _ in c.decode(vs))
        assert frames == 16
        with av.open(str(tmp_path / "out" / f"{name}.mp4")) as c:
            samples = sum(f.samples for f in c.decode(audio=0))
        # AAC codes whole 1024-sample frames: the raw track is 1.6 s plus less than one frame of padding
        assert 12_800 <= samples < 12_800 + 1024, samples
        clip = read_av(tmp_path / "out" / f"{name}.mp4", fps=10, size=None, audio_rate=8000)
        assert clip.video.shape == (16, 32, 32, 3) and clip.audio.shape == (12_800,)
        wav, rate = read_wav(tmp_path / "out" / f"{name}.wav")
        assert rate == 8000 and wav.shape == (12_800,)


def test_a_second_run_into_a_run_folder_being_trained_is_refused(tmp_path, cache):
    from mmdiff.outdir import FolderLock, OutputDirError

    run = tmp_path / "run"
    run.mkdir()
    with FolderLock(run):                        # another trainer writing this folder
        with pytest.raises(OutputDirError, match="in use by another run"):
            trainer(run, cache, steps=1).run()
    assert not (run / "last.pt").exists() and not (run / "log.csv").exists()
    trainer(run, cache, steps=1).run()           # free again: trains
    assert (run / "last.pt").is_file() and not (run / ".mmdiff-lock").exists()


def test_a_new_run_into_a_folder_with_an_empty_previews_folder_starts(tmp_path, cache):
    """The walkthrough makes RUN/previews before training: an empty folder is nothing to lose, so it is not refused
    (a non-empty log.csv is: tests/test_cli_bad_input.py)."""
    (tmp_path / "run" / "previews").mkdir(parents=True)
    trainer(tmp_path / "run", cache, steps=1).run()
    assert (tmp_path / "run" / "last.pt").is_file()
