"""The studio's error experience: an error shows on the tab's status line (not as an "Error" badge on every
output panel), its pop-up stays until closed, and it speaks the UI's language (no CLI flags, no server temp
paths, no "model None", no integer overflow). Also the zero-shot tab's start offset and short-audio notice.

The status-line wiring is a frontend chain (`.failure`), checked here on the app's dependency graph and by
calling the chained handler; the rest through gradio_client against the app served in-process.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from studio_fixtures import A2V, V2A, frames_ramp, make_media, running_app, sine, tiny_checkpoint, write_video

from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from mmdiff.config import PRESETS
from mmdiff.uploads import UploadError, UploadLimits, condition_audio, condition_video

SONIC_PI = Path("/usr/share/sonic-pi/samples")
MEGAMIND = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")
TINY = PRESETS["tiny"]
EVENTS = {  # api name -> elem_id or label of the status line its errors must show on
    "generate": "generate-status", "condition": "condition-status", "spectrogram": "spec-status",
    "evaluate": "evaluate-report", "monitor": "monitor-summary",
    "monitor_shipped_run": "monitor-summary", "build_study": None, "analyze_study": None,
}


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio-errors")
    ckpt = tiny_checkpoint(root / "tiny.pt")
    media = make_media(root / "media")
    media["long_av"] = write_video(root / "media" / "long_av.mp4", frames_ramp(40, 32, 32), 10,
                                   np.concatenate([sine(2.0, 8000, 300.0), sine(2.0, 8000, 900.0)]), 8000)
    with running_app(ckpt, [root], max_seconds=12.0) as (demo, url):
        yield {"demo": demo, "client": Client(url, verbose=False), "ckpt": ckpt, "media": media, "root": root}


def condition(client, ckpt, direction, path, start=0.0, mode="replacement"):
    """The zero-shot tab's first eight outputs (..., status, files); the soundtrack players come after them."""
    return client.predict(str(ckpt), None, direction, handle_file(str(path)), mode, 1.0, "ddim", 2, 0, 0, 3, start,
                          api_name="/condition")[:8]


def test_every_event_shows_its_errors_on_its_status_line_only(studio):
    demo = studio["demo"]
    fns = list(demo.fns.values())
    for api_name, elem_id in EVENTS.items():
        fn = next(f for f in fns if f.api_name == api_name)
        status = fn.show_progress_on                       # the "Error" badge and progress: this line only
        assert status is not None and len(status) == 1 and isinstance(status[0], gr.Markdown), api_name
        assert elem_id is None or status[0].elem_id == elem_id, api_name
        failure = [f for f in fns if f.trigger_after == fn._id and f.trigger_only_on_failure]
        assert len(failure) == 1 and failure[0].outputs == status, api_name


def test_a_failed_event_writes_its_message_on_the_status_line(tmp_path):
    from studio.context import StudioContext

    ctx = StudioContext.create(work_root=tmp_path / "work")
    with gr.Blocks() as demo:
        button, status = gr.Button(), gr.Markdown("3 clip(s), seed 0.")         # a previous success

        @ctx.handler("tab")
        def fails(request: gr.Request):
            raise UploadError(f"{tmp_path}/gradio/0a1b2c/my_clip*.wav: 0.05 s of audio is too short")

        event = button.click(fails, None, status, show_progress_on=[status])
        ctx.show_errors(event, status, "tab")
    request = gr.Request(session_hash="s1")
    with pytest.raises(gr.Error) as raised:
        fails(request)
    assert raised.value.duration is None                                       # the pop-up stays until closed
    report = next(f for f in demo.fns.values() if f.trigger_only_on_failure)
    assert report.fn(request) == r"**Error:** my\_clip\*.wav: 0.05 s of audio is too short"
    assert isinstance(report.fn(gr.Request(session_hash="other")), type(gr.skip()))   # sessions do not mix
    ctx.close()


@pytest.mark.parametrize("message, shown", [
    ("real set /srv/d has 5 clips but --num-samples is 64; clips are never repeated: add clips or pass "
     "--num-samples 5",
     'real set /srv/d has 5 clips but "N clips per set" is 64; clips are never repeated: add clips or set '
     '"N clips per set" to 5'),
    ("sr.pt is a 'sr' checkpoint where a 'joint' one is needed; it is a super-resolution model: pass it with "
     "--upscale", "sr.pt is a 'sr' checkpoint where a 'joint' one is needed; it is a super-resolution model: the "
                  "Upscale option uses it (start the studio with --sr-ckpt PATH)"),
    ("checkpoint {tmp}/gradio/5f3e/bad.pt is truncated or corrupt", "checkpoint bad.pt is truncated or corrupt"),
])
def test_messages_speak_the_uis_language(message, shown):
    import tempfile

    from studio.context import user_error

    assert user_error(message.format(tmp=tempfile.gettempdir())).message == shown.replace("'", "'")


def test_no_model_none_and_no_overflow():
    from mmdiff.cliargs import MAX_SEED
    from studio.context import StudioContext
    from studio.generate_tab import check_prompt, spec_from

    with pytest.raises(gr.Error) as e:
        check_prompt(TINY, None, "a red ball")                                   # the shipped default model
    assert "None" not in e.value.message and "the model the shipped default model" not in e.value.message
    assert "the shipped default model was trained without text" in e.value.message
    ctx = StudioContext.create()
    try:
        with pytest.raises(gr.Error, match=f"Seed must be a whole number from 0 to {MAX_SEED}"):
            spec_from(ctx, "ddim", 2, 2**63, 1, 0.0, 3)
    finally:
        ctx.close()


def test_huge_seed_is_refused_by_the_control(studio):
    with pytest.raises(AppError, match="greater than maximum value"):
        studio["client"].predict(str(studio["ckpt"]), None, "ddim", 2, 2**64, 1, 0, 3, api_name="/generate")


def test_condition_errors_name_the_upload_not_the_server_path(studio, tmp_path):
    bad = tmp_path / "wrecked.wav"
    bad.write_bytes(b"RIFF" + bytes(40) + b"not really audio" * 100)
    with pytest.raises(AppError) as e:
        condition(studio["client"], studio["ckpt"], A2V, bad)
    assert "wrecked.wav" in str(e.value) and "/gradio/" not in str(e.value) and "/tmp" not in str(e.value)


def test_start_offset_picks_the_part_of_a_longer_upload(studio):
    client, media = studio["client"], studio["media"]
    *_, status, files = condition(client, studio["ckpt"], A2V, media["long_av"], start=2.0)
    assert "from 2 s" in status
    wav = next(f for f in files if f.endswith("condition.wav"))
    from mmdiff.data.av_io import read_wav

    audio, rate = read_wav(wav)
    spec = np.abs(np.fft.rfft(audio[:8000]))
    assert abs(np.argmax(spec) * rate / 8000 - 900) < 5                         # the second tone, not the first
    frames = condition_video(media["long_av"], TINY, UploadLimits(), start=2.0)
    assert abs(frames[0].mean() - 200) < 4                                      # frame 20 of the ramp
    with pytest.raises(AppError, match=r"long_av\.mp4: starting at 9 s leaves no audio \(4\.\d+ s long\)"):
        condition(client, studio["ckpt"], A2V, media["long_av"], start=9.0)


def test_short_sound_is_padded_with_a_note(studio):
    *_, status, _ = condition(studio["client"], studio["ckpt"], A2V, studio["media"]["short_wav"])
    assert "Video generated" in status
    assert "Note: short.wav: 0.50 s of audio, padded with 1.10 s of silence to the model's 1.60 s" in status


def test_sonic_pi_samples_shorter_than_the_clip_are_padded():
    """Debian's sonic-pi-samples (.ci/run installs them): 104 of its 165 samples are under 1.6 s."""
    assert SONIC_PI.is_dir(), "install Debian's sonic-pi-samples (apt-get install sonic-pi-samples; .ci/run does)"
    notices: list[str] = []
    audio = condition_audio(SONIC_PI / "bass_hard_c.flac", TINY, UploadLimits(), notices=notices)   # 1.50 s
    assert audio.shape == (TINY.audio_samples,) and np.abs(audio[:11000]).max() > 0.05
    assert not audio[12100:].any()
    assert notices == ["bass_hard_c.flac: 1.50 s of audio, padded with 0.10 s of silence to the model's 1.60 s"]
    with pytest.raises(UploadError, match=r"elec_tick\.flac: 0\.02 s of audio is too short"):
        condition_audio(SONIC_PI / "elec_tick.flac", TINY, UploadLimits())   # a 19 ms tick: under one frame


def test_damaged_upload_is_decoded_with_a_note(studio):
    """Megamind.avi (opencv-doc; its first AC-3 packet does not decode) was "may be corrupt"."""
    assert MEGAMIND.is_file(), "install Debian's opencv-doc (apt-get install opencv-doc; .ci/run does)"
    png, status = studio["client"].predict("(none)", handle_file(str(MEGAMIND)), "(none)", None,
                                           api_name="/spectrogram")
    assert png.endswith(".png")
    assert status.startswith("Note: Megamind.avi is damaged: skipped 1 of ") and "as ffmpeg does" in status
    *_, status, _ = condition(studio["client"], studio["ckpt"], A2V, MEGAMIND)
    assert "Video generated" in status and "Note: Megamind.avi is damaged: skipped 1 of 53 audio packets" in status
