"""Non-UI pieces the studio calls: model store, cancellation, path policy, run reader, study zip, eval helpers."""
from __future__ import annotations

import csv
import threading
import zipfile

import numpy as np
import pytest
from studio_fixtures import tiny_checkpoint

from mmdiff.checkpoint import CheckpointError
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
    assert run.describe() == "step 20, loss 0.2500, video 0.1500, audio 0.1000, 3.0 clips/s, 2.0 min"
    assert run.checkpoint is None


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
