"""Non-UI pieces the studio calls: model store, cancellation, path policy, run reader, study zip, eval helpers."""
from __future__ import annotations

import csv
import threading
import zipfile

import numpy as np
import pytest
from studio_fixtures import tiny_checkpoint

from mmdiff.checkpoint import CheckpointError, load_checkpoint
from mmdiff.jobs import JobCancelled, JobSpec, ModelStore, find_checkpoints, run_generation
from mmdiff.training.runview import RunFolderError, read_run


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("units") / "tiny.pt")


def test_missing_default_model_says_what_to_do(tmp_path):
    store = ModelStore("cpu", default_ckpt=tmp_path / "tiny-synthetic.pt")
    with pytest.raises(CheckpointError, match="default model tiny-synthetic.pt is missing.*mmdiff.train"):
        store.get(None)


def test_store_caches_and_progress_reports_every_step(ckpt):
    store = ModelStore("cpu")
    assert store.get(ckpt)[0] is store.get(str(ckpt))[0]
    seen = []
    cfg, video, audio = run_generation(store, ckpt, JobSpec(num=2, sampler="ddim", steps=3),
                                       on_step=lambda s, n, p: seen.append((s, n, None if p is None else p.shape)))
    assert [s for s, _, _ in seen] == [1, 2, 3] and all(n == 3 for _, n, _ in seen)
    assert seen[0][2] == (2, 16, 32, 32, 3) and seen[-1][2] == (2, 16, 32, 32, 3)   # x0 previews
    assert video.shape == (2, 16, 3, 32, 32) and audio.shape == (2, 1, 12800)


def test_cancel_stops_at_the_next_step_and_frees_the_model(ckpt):
    store = ModelStore("cpu")
    cancel = threading.Event()
    steps = []

    def on_step(s, n, p):
        steps.append(s)
        if s == 2:
            cancel.set()

    with pytest.raises(JobCancelled):
        run_generation(store, ckpt, JobSpec(sampler="ddim", steps=50), on_step=on_step, cancel=cancel)
    assert steps == [1, 2]
    assert store.lock(ckpt).acquire(blocking=False)                 # released
    store.lock(ckpt).release()


def test_job_spec_limits():
    with pytest.raises(ValueError, match="batch size must be between 1 and 4"):
        JobSpec(num=5, max_num=4).options()
    with pytest.raises(ValueError, match="unknown sampler"):
        JobSpec(sampler="euler").options()
    with pytest.raises(ValueError, match="audio guidance scale must be between 0 and 50, got 60"):
        JobSpec(audio_guidance_scale=60).options()


def test_find_checkpoints_skips_hidden_and_venvs(tmp_path):
    for rel in ("runs/a/last.pt", "b.pt", ".venv/lib/x.pt", ".git/y.pt", "runs/.tmp.pt"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    assert sorted(p.name for p in find_checkpoints([tmp_path])) == ["b.pt", "last.pt"]


def test_server_paths_stay_in_the_workspace(tmp_path):
    gr = pytest.importorskip("gradio")
    from studio.context import StudioContext

    (tmp_path / "ws" / "data").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    ctx = StudioContext.create(workspace=[tmp_path / "ws"], work_root=tmp_path / "work")
    assert ctx.server_path("data", "data folder", must_be_dir=True) == (tmp_path / "ws" / "data").resolve()
    with pytest.raises(gr.Error, match="outside the studio's workspace"):
        ctx.server_path(str(tmp_path / "outside"), "data folder")
    with pytest.raises(gr.Error, match="does not exist"):
        ctx.server_path("../outside", "data folder")                # no escaping with ..
    with pytest.raises(gr.Error, match="does not exist"):
        ctx.server_path("nothing", "data folder")
    assert ctx.session_dir(type("R", (), {"session_hash": "../../etc"})()).parent == ctx.work_root
    ctx.close()
    assert not (tmp_path / "work").exists()


def test_run_reader(tmp_path):
    with pytest.raises(RunFolderError, match="not a training run folder"):
        read_run(tmp_path)
    with open(tmp_path / "log.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "video", "audio", "lr", "clips_per_s", "elapsed_s"])
        w.writerow([10, 0.5, 0.3, 0.2, 1e-4, 3.0, 60])
        w.writerow([20, 0.25, 0.15, 0.1, 1e-4, 3.0, 120])
    (tmp_path / "previews").mkdir()
    for name in ("step0000010_0.mp4", "step0000020_1.mp4", "step0000020_0.mp4", "notes.txt"):
        (tmp_path / "previews" / name).write_bytes(b"x")
    run = read_run(tmp_path)
    assert run.preview_step == 20 and [p.name for p in run.previews] == ["step0000020_0.mp4", "step0000020_1.mp4"]
    # smoothed as the curve (EMA 0.9 from the first row): loss 0.9*0.5 + 0.1*0.25, video 0.9*0.3 + 0.1*0.15, ...
    assert run.describe() == ("step 20, loss 0.4750 (smoothed over about 100 steps; last logged 0.2500), "
                              "video 0.2850, audio 0.1900, 3.0 clips/s, 2.0 min")
    assert run.checkpoint is None


def write_log(path, losses, first_step=10, every=10):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "video", "audio", "lr", "clips_per_s", "elapsed_s"])
        for k, loss in enumerate(losses):
            w.writerow([first_step + k * every, loss, loss / 2, loss / 2, 1e-4, 2.0, k])


def test_smoothed_headline_is_the_curves_ema_worked_by_hand(tmp_path):
    write_log(tmp_path / "log.csv", [1.0, 0.0, 0.0, 1.0], every=25)
    run = read_run(tmp_path)
    # s0 = 1; s1 = 0.9; s2 = 0.81; s3 = 0.9 * 0.81 + 0.1 * 1 = 0.829
    assert run.smoothed() == pytest.approx(0.829) and run.smoothed("video") == pytest.approx(0.4145)
    assert run.smoothing_steps() == 250                     # 1 / (1 - 0.9) logged rows of 25 steps
    assert "loss 0.8290 (smoothed over about 250 steps; last logged 1.0000)" in run.describe()


def test_stages_share_one_step_axis(tmp_path):
    from mmdiff.training.runview import loss_curve

    write_log(tmp_path / "stage1-log.csv", [2.0, 1.0, 0.5])           # steps 10-30
    write_log(tmp_path / "log.csv", [0.4, 0.3])                       # fine-tune: steps 10-20 again
    run = read_run(tmp_path)
    assert [(s.name, s.log.name, s.offset) for s in run.stages] == [("stage 1", "stage1-log.csv", 0),
                                                                      ("stage 2", "log.csv", 30)]
    assert [r["loss"] for r in run.rows] == ["0.4", "0.3"]            # the headline is the current stage's
    assert run.describe().startswith("stage 2 of 2, step 20, loss 0.3900 ")
    assert loss_curve(run, tmp_path / "loss.png").stat().st_size > 1000


def test_the_shipped_run_has_its_six_stages(tmp_path):
    from mmdiff.training.runview import SHIPPED_RUN, loss_curve

    run = read_run(SHIPPED_RUN)
    assert [s.log.name for s in run.stages] == ["stage1-log.csv", "stage2-log.csv", "stage3-log.csv",
                                                "stage4-log.csv", "stage5-log.csv", "log.csv"]
    # README: 3,900 from scratch + 6,560 fine-tuned (eps), then 1,900 + 1,800 with v-prediction, then 1,000 of the
    # caption branch alone, then 1,450 of all weights at batch 8 (logged steps)
    assert [s.last_step for s in run.stages] == [3940, 6560, 1900, 1800, 1000, 1450]
    assert [s.offset for s in run.stages] == [0, 3940, 10500, 12400, 14200, 15200]
    assert float(run.stages[0].rows[0]["loss"]) > 1 > 0.1 > run.smoothed()          # from scratch, then fine-tuned
    assert run.describe().startswith("stage 6 of 6, step 1450, loss 0.0")
    ckpt = load_checkpoint(run.checkpoint)                                           # it resumes as the README says
    assert ckpt["step"] == 1450 and ckpt["model_config"]["prediction"] == "v" and ckpt["optimizer"] is not None
    assert ckpt["model_config"]["text_dim"] == 384 and ckpt["train_args"]["train.trainable"] == "all"
    assert ckpt["train_args"]["init_steps"] == 15100
    assert loss_curve(run, tmp_path / "loss.png").stat().st_size > 1000


def test_monitor_says_when_there_are_no_previews(tmp_path):
    pytest.importorskip("gradio")
    import argparse

    from mmdiff.training.cli import add_run_args
    from studio.monitor_tab import NO_PREVIEWS, summary_markdown

    write_log(tmp_path / "log.csv", [0.5, 0.4])
    md = summary_markdown(read_run(tmp_path))
    assert NO_PREVIEWS in md and "no previews yet" in md
    train = argparse.ArgumentParser()
    add_run_args(train)                                     # the train CLI's real flag and default
    assert "--preview-every" in md and "--preview-every" in train.format_help()
    assert train.get_default("preview_every") == 1000 and "default 1,000" in md
    (tmp_path / "previews").mkdir()
    (tmp_path / "previews" / "step0000020_0.mp4").write_bytes(b"x")
    md = summary_markdown(read_run(tmp_path))
    assert "previews from step 20" in md and "no previews yet" not in md


def test_zip_study_leaves_the_key_and_the_analysis_out(tmp_path):
    from eval.study.bundle import zip_study

    with pytest.raises(ValueError, match="not a built study"):
        zip_study(tmp_path, tmp_path / "s.zip")
    study = tmp_path / "study"
    for rel in ("private/key.json", "analysis/workers.csv", "mturk/mos_vq/batch.csv", "media/abc.mp4",
                "preview/mos_vq.html"):
        (study / rel).parent.mkdir(parents=True, exist_ok=True)
        (study / rel).write_text(rel)
    out = zip_study(study, tmp_path / "s.zip")
    with zipfile.ZipFile(out) as z:
        assert sorted(z.namelist()) == ["media/abc.mp4", "mturk/mos_vq/batch.csv", "preview/mos_vq.html"]
        assert z.read("media/abc.mp4") == b"media/abc.mp4"
    with zipfile.ZipFile(zip_study(study, study / "all.zip", include_private=True)) as z:
        assert {"private/key.json", "analysis/workers.csv"} <= set(z.namelist())
        assert "all.zip" not in z.namelist()                                           # not itself
    assert not [p for p in study.iterdir() if p.name.startswith(".")]                 # no temp left


def test_eval_dashboard_helpers(tmp_path):
    from eval.dashboard import missing_weights, results_plot, results_rows

    msgs = missing_weights(["fad", "av-align"], weights_dir=tmp_path)       # AudioCLIP is never shipped
    assert set(msgs) == {"fad"}
    assert "AudioCLIP-Full-Training.pt" in msgs["fad"] and str(tmp_path) in msgs["fad"]
    results = {"config": {"num_samples": 8}, "runs": [{"run": 0, "fvd": 10.0, "av-align": 0.5},
                                                       {"run": 1, "fvd": 14.0, "av-align": 0.7}],
               "summary": {"fvd": {"mean": 12.0, "std": float(np.std([10, 14], ddof=1))},
                           "av-align": {"mean": 0.6, "std": 0.1414}}}
    header, rows = results_rows(results)
    assert header == ["metric", "mean", "std", "run 0", "run 1"]
    assert rows[0] == ["fvd", 12.0, 2.8284, 10.0, 14.0]
    assert results_plot(results, tmp_path / "r.png").stat().st_size > 1000


def test_user_errors_are_escaped_once():
    """Gradio renders gr.Error text as HTML: file names and typed paths are escaped, exactly once."""
    from studio.context import user_error, user_errors

    assert user_error("clip <img src=x onerror=alert(1)>.mp4 & co").message == "clip &lt;img src=x onerror=alert(1)&gt;.mp4 &amp; co"

    @user_errors
    def fails():
        raise ValueError("upload <b>x</b>.wav is too short")

    with pytest.raises(Exception) as info:
        fails()
    assert info.value.message == "upload &lt;b&gt;x&lt;/b&gt;.wav is too short"


# ---------------------------------------------------------------------------- the studio explains itself (#20)
def test_scope_line_of_the_shipped_model_says_what_it_knows():
    from mmdiff.modelcard import read_card, scope_line

    card = read_card(None)                                       # mmdiff/assets/tiny-synthetic.pt
    line = scope_line(card)
    assert card.shipped and card.synthetic and card.takes_prompt and card.config.text_dim == 384
    assert "text-conditioned: it follows a prompt worded like its training captions" in line
    assert "16 frames of 32x32 at 10 fps with 8000 Hz audio (1.6 s)" in line
    assert f"{card.step:,} training steps" in line and card.step > 0
    assert "only on the synthetic generator's clips (python -m mmdiff.data.synthetic)" in line
    assert "red or blue ball" in line and "yellow or green square" in line      # from synthetic.CLASSES
    assert "Real media" in line and "out of distribution" in line and "not meaningful" in line


def test_card_of_a_text_model_is_read_without_loading_its_weights(tmp_path):
    from mmdiff.modelcard import scope_line

    text = tiny_checkpoint(tmp_path / "tiny-text.pt", text=True)
    store = ModelStore("cpu")
    card = store.card(text)
    assert card.takes_prompt and card.config.text_dim == 384 and not card.synthetic and not card.shipped
    line = scope_line(card)
    assert line.startswith("tiny-text.pt: text-conditioned") and "synthetic" not in line
    assert "Its training data is not recorded" in line and "out of distribution" in line
    assert store._models == {} and store.card(text) is card                   # no model built; cached
    data = tmp_path / "syn"
    data.mkdir()
    (data / "events.jsonl").write_text("{}\n")
    from dataclasses import replace

    assert "only on the synthetic generator's clips" in scope_line(replace(card, train_args={"data": str(data)}))
    assert "Trained (no training steps recorded" not in scope_line(replace(card, step=5, train_args={"data": "x"}))


def test_example_captions_are_the_synthetic_captions_one_per_class():
    from mmdiff.data.synthetic import CLASSES, caption, example_captions, sample_clip_spec

    got = example_captions(seed=0)
    assert len(got) == len(CLASSES)
    for cls, text in zip(CLASSES, got):
        assert cls.colour in text and cls.pitch_word in text
    dataset = {caption(sample_clip_spec(np.random.default_rng([0, i]), 1.6)) for i in range(50)}
    assert set(got) <= dataset                                   # words the training captions use


def test_random_seed_is_in_range_differs_and_leaves_global_rngs_alone():
    import random

    import torch

    from mmdiff.cliargs import MAX_SEED
    from studio.generate_tab import random_seed

    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    seeds = [random_seed() for _ in range(20)]
    assert all(isinstance(s, int) and 0 <= s <= MAX_SEED for s in seeds)
    assert len(set(seeds)) > 15
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == py_state
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state()[1:2], np_state[1:2]))


def test_progress_text_gives_elapsed_time_and_an_estimate():
    from studio.context import StudioContext
    from studio.runner import progress_text, stream_job

    assert progress_text("sampling", 10, 50, 5.0) == "sampling: step 10/50, 5.0 s elapsed, about 20.0 s left"
    assert progress_text("upscaling", 25, 25, 7.25) == "upscaling: step 25/25, 7.2 s elapsed"
    ticks = iter(range(0, 100, 2))                               # a clock that advances 2 s per reading
    ctx = StudioContext.create()
    shown = threading.Semaphore(0)                              # the UI saw a step: the job goes on

    def work(on_step, cancel):
        for s in (1, 2, 3, 4):
            on_step(s, 4, None)
            assert shown.acquire(timeout=10)
        return "result"

    try:
        texts = []
        for kind, value in stream_job(ctx, None, work, clock=lambda: next(ticks), min_interval=0):
            if kind == "progress":
                texts.append(value[0])
                shown.release()
            else:
                assert value == "result"
    finally:
        ctx.close()
    assert texts == ["sampling: step 1/4, 2.0 s elapsed, about 6.0 s left",
                     "sampling: step 2/4, 4.0 s elapsed, about 4.0 s left",
                     "sampling: step 3/4, 6.0 s elapsed, about 2.0 s left", "sampling: step 4/4, 8.0 s elapsed"]


def test_progress_updates_are_throttled_but_the_last_step_and_result_arrive():
    import time

    from studio.context import StudioContext
    from studio.runner import stream_job

    ctx = StudioContext.create()

    def work(on_step, cancel):                                  # 40 steps of 10 ms: 0.4 s in all
        for s in range(1, 41):
            time.sleep(0.01)
            on_step(s, 40, None)
        return "result"

    try:
        events = list(stream_job(ctx, None, work, min_interval=0.15))
    finally:
        ctx.close()
    texts = [v[0] for k, v in events if k == "progress"]
    assert events[-1] == ("done", "result")
    assert texts[0].startswith("sampling: step 1/40")          # the first update goes out at once
    assert 2 <= len(texts) <= 6                                 # about every 0.15 s, not 40 updates
    steps = [int(t.split("step ")[1].split("/")[0]) for t in texts]
    assert steps == sorted(steps)


def test_small_clips_get_a_sharp_display_copy_and_keep_the_native_download(tmp_path):
    import torch

    from mmdiff.config import PRESETS
    from mmdiff.data.av_io import read_av
    from mmdiff.data.pixels import nearest_upscale, view_factor
    from mmdiff.jobs import write_clips, zip_clips

    assert [view_factor(s, 128) for s in (32, 48, 64, 128, 256)] == [4, 2, 2, 1, 1]
    block = nearest_upscale(np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3), 3)
    assert block.shape == (1, 6, 6, 3) and (block[0, :3, :3] == block[0, 0, 0]).all()
    cfg = PRESETS["tiny"]
    g = torch.Generator().manual_seed(0)
    tiles = torch.rand(2, 16, 3, 4, 4, generator=g) * 2 - 1               # 8x8-pixel tiles: codec-friendly
    video = tiles.repeat_interleave(8, -1).repeat_interleave(8, -2)      # (2, 16, 3, 32, 32)
    audio = torch.rand(2, 1, cfg.audio_samples, generator=g) - 0.5
    clips = write_clips(tmp_path, cfg, video, audio, prefix="c", view_px=128)
    shown = read_av(clips[0].view, None, None, None, streams=("video",)).video
    native = read_av(clips[0].mp4, None, None, None, streams=("video",)).video
    assert native.shape == (16, 32, 32, 3) and shown.shape == (16, 128, 128, 3)
    assert clips[0].view not in clips[0].downloads and clips[0].mp4 in clips[0].downloads
    assert np.abs(shown.astype(int) - nearest_upscale(native, 4).astype(int)).mean() < 6   # the same pixels, bigger
    assert write_clips(tmp_path / "big", cfg, video, audio, view_px=16)[0].view.name == "clip_0.mp4"   # no copy
    bundle = zip_clips(tmp_path / "all.zip", clips)
    with zipfile.ZipFile(bundle) as z:
        assert z.namelist() == [p.name for c in clips for p in c.downloads]
        assert all(z.read(p.name) == p.read_bytes() for c in clips for p in c.downloads)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]          # written atomically


def test_start_offset_is_validated_against_the_file(tmp_path):
    from studio_fixtures import frames_ramp, sine, write_pcm_wav, write_video

    from mmdiff.config import PRESETS
    from mmdiff.uploads import UploadError, UploadLimits, condition_audio, condition_video, original_soundtrack

    cfg, limits = PRESETS["tiny"], UploadLimits()
    video = write_video(tmp_path / "v.mp4", frames_ramp(30, 32, 32), 10, sine(3.0, 8000, 500.0), 8000)
    wav = write_pcm_wav(tmp_path / "a.wav", sine(3.0, 8000), 8000)
    with pytest.raises(UploadError, match=r"^v\.mp4: the start time must be 0 s or later, got -1 s$"):
        condition_video(video, cfg, limits, start=-1)
    with pytest.raises(UploadError, match=r"^v\.mp4: starting at 3\.5 s leaves no video \(3\.0\d s long\); "
                                          r"choose a start from 0 to 1\.4\d s$"):
        condition_video(video, cfg, limits, start=3.5)
    with pytest.raises(UploadError, match=r"^a\.wav: starting at 3 s leaves no audio \(3\.00 s long\)"):
        condition_audio(wav, cfg, limits, start=3.0)
    assert condition_video(video, cfg, limits, start=1.0)[0].mean() == pytest.approx(100, abs=4)   # frame 10
    original = original_soundtrack(video, cfg, limits, start=1.0)
    spectrum = np.abs(np.fft.rfft(original[:8000]))
    assert original.shape == (cfg.audio_samples,) and abs(np.argmax(spectrum) - 500) < 5
    silent = write_video(tmp_path / "s.mp4", frames_ramp(20, 32, 32), 10)
    assert original_soundtrack(silent, cfg, limits) is None


def test_example_clips_exist_decode_and_are_the_synthetic_generators():
    import json

    from mmdiff.data.av_io import read_av, read_wav
    from mmdiff.data.synthetic import make_clip
    from studio.condition_tab import A2V, EXAMPLES, V2A, example_rows

    clips = json.loads((EXAMPLES / "examples.json").read_text())["clips"]
    rows, labels = example_rows()
    assert len(rows) == len(clips) == len(labels) >= 2 and {r[0] for r in rows} == {V2A, A2V}
    for clip, row in zip(clips, rows):
        path = EXAMPLES / clip["file"]
        assert row[1] == str(path) and path.stat().st_size < 40_000                  # tiny
        made = make_clip(clip["index"], clip["seed"], clip["frames"], clip["fps"], clip["size"], clip["audio_rate"])
        assert made.record["caption"] == clip["caption"]
        if path.suffix == ".wav":
            audio, rate = read_wav(path)
            assert rate == 8000 and np.abs(audio - made.audio).max() < 1e-3
        else:
            decoded = read_av(path, None, None, None)
            assert decoded.video.shape == (16, 32, 32, 3) and decoded.audio is not None
            assert np.abs(decoded.video.astype(int) - made.video.astype(int)).mean() < 4


def ancestors(block):
    while block is not None:
        yield block
        block = block.parent


def test_evaluate_shows_only_the_inputs_of_its_source(tmp_path):
    from studio.evaluate_tab import FROM_FOLDER, FROM_MODEL, source_inputs

    demo, by_label = built_evaluate_tab(tmp_path)
    hidden = lambda label: any(b.visible is False for b in ancestors(by_label[label]))     # noqa: E731
    model_only = ("Model checkpoint", "Sampler", "Steps", "DDIM eta", "DPM-Solver++ order")
    assert all(hidden(label) for label in model_only) and not hidden("Folder of generated clips")  # the default
    change = next(f for f in demo.fns.values() if f.fn is source_inputs)
    assert change.inputs == [by_label["Evaluate"]] and change.targets[0][1] == "change"
    folder_field, model_inputs = change.outputs
    assert folder_field is by_label["Folder of generated clips"]
    assert all(model_inputs in ancestors(by_label[label]) for label in model_only)
    assert model_inputs not in ancestors(folder_field)
    shown_folder, shown_model = source_inputs(FROM_FOLDER)
    assert shown_folder["visible"] is True and shown_model["visible"] is False
    shown_folder, shown_model = source_inputs(FROM_MODEL)
    assert shown_folder["visible"] is False and shown_model["visible"] is True


def built_evaluate_tab(tmp_path):
    """The Evaluate tab built alone: (demo, its blocks by label)."""
    gr = pytest.importorskip("gradio")
    from studio import evaluate_tab
    from studio.context import StudioContext

    ctx = StudioContext.create(work_root=tmp_path / "work")
    with gr.Blocks() as demo:
        evaluate_tab.build(ctx, str(tmp_path / "cache"))
    return demo, {getattr(b, "label", None): b for b in demo.blocks.values()}


def test_evaluate_unticks_metrics_whose_weights_are_missing_with_the_reason(tmp_path, monkeypatch):
    from studio.context import md_escape
    from studio.evaluate_tab import weight_ticks

    empty = tmp_path / "no_weights"
    empty.mkdir()
    monkeypatch.setenv("MMDIFF_WEIGHTS_DIR", str(empty))               # the default lookup finds nothing there
    demo, by_label = built_evaluate_tab(tmp_path)
    ticked = by_label["Metrics"].value
    assert "fad" not in ticked and "av-align" in ticked                 # AudioCLIP is never shipped
    note = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "evaluate-weights-note").value
    assert "**fad**" in note and "AudioCLIP-Full-Training.pt not found; put it in" in note
    assert md_escape(str(empty)) in note
    # the weights-folder field re-checks: the mm-diffusion protocol's I3D state dict is not there either
    ticked, note = weight_ticks(["fvd", "kvd", "fad", "av-align"], str(empty), "mm-diffusion")
    assert ticked == ["av-align"] and md_escape("i3d_pretrained_400.pt not found") in note
    (empty / "i3d_pretrained_400.pt").write_bytes(b"x")                 # found now: ticked again
    ticked, note = weight_ticks(["av-align"], str(empty), "mm-diffusion")
    assert ticked == ["fvd", "kvd", "av-align"] and "i3d" not in note


def test_evaluate_offers_the_generate_tabs_sampler_controls(tmp_path):
    demo, by_label = built_evaluate_tab(tmp_path)
    with pytest.importorskip("gradio").Blocks():
        from studio.context import StudioContext
        from studio.generate_tab import sampler_controls

        ctx = StudioContext.create(work_root=tmp_path / "work2")
        sampler, steps, _, _, eta, order = sampler_controls(ctx)
    for label, gen in (("Sampler", sampler), ("Steps", steps), ("DDIM eta", eta), ("DPM-Solver++ order", order)):
        ev = by_label[label]
        assert (ev.value, getattr(ev, "choices", None), getattr(ev, "minimum", None), getattr(ev, "maximum", None)) \
            == (gen.value, getattr(gen, "choices", None), getattr(gen, "minimum", None), getattr(gen, "maximum", None))
    assert not by_label["Seed"].visible and not by_label["Batch size"].visible      # not shown: no use here


def test_small_n_warning_quotes_the_measured_spread():
    from eval.spread import MEASURED, PROTOCOL_N, nearest_measured, small_n_warning

    fvd, fvd_std = MEASURED[16]["fvd"]
    text = small_n_warning(16, ["fvd", "av-align"])
    assert "N = 16 is small for FVD" in text and f"FVD {fvd:.3g} ± {fvd_std:.3g} at N = 16" in text
    assert "KVD" not in text and "bench_fvd_spread" in text
    assert "KVD" in small_n_warning(16, ["kvd"])
    assert nearest_measured(20) == 16 and nearest_measured(100) == 64                 # log scale: 100/64 < 4
    assert "at N = 64, the measured N nearest to 100" in small_n_warning(100, ["fvd"])
    assert nearest_measured(300) == 256 and "FVD 32 ± 2.88 at N = 256" in small_n_warning(300, ["fvd"])
    assert nearest_measured(1000) == 1024 and "FVD 8.34 ± 0.62 at N = 1024" in small_n_warning(1000, ["fvd"])
    assert nearest_measured(1500) == 2048 and "FVD 4.16 ± 0.31 at N = 2048" in small_n_warning(1500, ["fvd"])
    assert small_n_warning(PROTOCOL_N, ["fvd", "kvd"]) == "" and small_n_warning(2047, ["fvd"]) != ""
    assert small_n_warning(16, ["av-align", "fad"]) == ""                # only FVD/KVD were measured


def test_a_checkpoint_rewritten_on_disk_is_loaded_again(tmp_path):
    """Picking RUN/last.pt while its training run saves: the next job samples the new weights, not the old ones,
    under the same lock (one lock per file)."""
    import os

    import torch

    path = tiny_checkpoint(tmp_path / "last.pt", seed=0)
    store = ModelStore("cpu")
    first, _ = store.get(path)
    assert store.get(path)[0] is first                                        # unchanged file: kept
    lock = store.lock(path)
    tiny_checkpoint(tmp_path / "new.pt", seed=1)
    os.replace(tmp_path / "new.pt", path)                                    # as a training run saves (atomic rename)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))             # a later mtime even on a coarse clock
    second, _ = store.get(path)
    assert second is not first and store.lock(path) is lock
    w1, w2 = (next(m.parameters()).detach() for m in (first, second))
    assert not torch.equal(w1, w2)
    assert len(store._models) == 1                                           # the old version is dropped
