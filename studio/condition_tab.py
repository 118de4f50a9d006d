"""Zero-shot conditioning tab: a video in, its audio out (or an audio file in, its video out), side by side."""
from __future__ import annotations

import html
import json
import time
from pathlib import Path

import numpy as np
import gradio as gr

from mmdiff.data.av_io import AVClip, write_clip, write_wav
from mmdiff.diffusion.guidance import DEFAULT_GRADIENT_SCALE, Condition
from mmdiff.generate import trained_for_conditioning
from mmdiff.jobs import run_generation, write_clips, write_view
from mmdiff.uploads import (condition_audio, condition_tensor, condition_video, original_soundtrack,
                            UploadError, start_range)
from mmdiff.viz import clip_figure, save_png
from studio.context import StudioContext, ui_text, user_error
from studio.generate_tab import (PLAYER_PX, VIEW_PX, checked_checkpoint, model_picker, sampler_controls, spec_from,
                                 watch_model)
from studio.runner import stream_job

JOB = "condition"                 # cancel-event kind: this tab's Cancel stops only its own jobs

V2A = "video → audio: upload a video, generate its sound"
A2V = "audio → video: upload a sound, generate its video"
EXAMPLES = Path(__file__).resolve().parent / "examples"     # synthetic clips (examples.json says how they were made)


def example_rows() -> tuple[list[list], list[str]]:
    """(rows of [direction, file, method, lambda], labels) for the shipped synthetic example clips."""
    rows, labels = [], []
    for clip in json.loads((EXAMPLES / "examples.json").read_text())["clips"]:
        path = EXAMPLES / clip["file"]
        direction = V2A if path.suffix == ".mp4" else A2V
        rows.append([direction, str(path), "gradient", 1.0])
        labels.append(f"{direction.split(':')[0]}: {clip['caption']} (synthetic clip, {path.name})")
    return rows, labels


START_INFO = ("where in the upload the clip begins (the model uses one clip length from there; a start past the "
              "end is refused); shorter audio is padded with silence")


def start_hint(ctx: StudioContext, media, choice, upload_ckpt):
    """The start control says how long the new upload is and the latest start that leaves a whole clip."""
    if not media:
        return gr.Number(info=START_INFO)
    try:
        needs = ctx.store.card(checked_checkpoint(ctx, choice, upload_ckpt)).config.duration
        length, latest = start_range(media, needs, ctx.limits)
    except UploadError as e:
        return gr.Number(info=f"this upload cannot be used: {ui_text(str(e))}")
    except (gr.Error, ValueError, OSError):
        return gr.Number(info=START_INFO)                 # a model that cannot be read: Generate says why
    return gr.Number(info=f"{Path(media).name} is {length:.2f} s long: start from 0 to {latest:.2f} s (the model "
                          f"uses {needs:.1f} s from there)")


def skips(n: int) -> tuple:
    return (gr.skip(),) * n


def write_condition(out: Path, modality: str, value: np.ndarray, cfg):
    """The condition as the model sees it: (video mp4 to show or None, its wav or None, its view png), and the
    native-size mp4 of a video condition for the downloads (or None)."""
    if modality == "video":
        silence = np.zeros(cfg.audio_samples, np.float32)
        native = write_clip(out / "condition.mp4", value, silence, cfg.fps, cfg.audio_rate)
        shown = write_view(out / "condition_view.mp4", value, silence, cfg.fps, cfg.audio_rate, VIEW_PX) or native
        fig = clip_figure(AVClip(value, None, cfg.fps, cfg.audio_rate, "condition"))
        return shown, None, save_png(fig, out / "condition.png"), native
    wav = write_wav(out / "condition.wav", value, cfg.audio_rate)
    fig = clip_figure(AVClip(None, value, cfg.fps, cfg.audio_rate, "condition"))
    return None, wav, save_png(fig, out / "condition.png"), None


def build(ctx: StudioContext):
    gr.Markdown("Generate the missing modality for a given one (paper Sec. 3.4). *Replacement* re-noises the "
                "given stream at every step; *gradient* also guides the generated stream with weight lambda "
                "(start from 1 with DPM-Solver++/DDIM). The model uses one clip length (1.6 s for the shipped "
                "model) from \"Start at\".")
    choice, upload_ckpt, scope = model_picker(ctx, prefix="cond")
    watch_model(ctx, choice, upload_ckpt, scope)
    direction = gr.Radio([V2A, A2V], value=V2A, label="Direction")
    media = gr.File(label="Condition file (video: mp4/mov/webm/mkv/avi; audio: wav/flac/mp3/ogg/m4a or a video "
                          "with sound)", type="filepath", elem_id="condition-upload")
    with gr.Row():
        mode = gr.Radio(["replacement", "gradient", "trained"], value="gradient", label="Method",
                        info="trained: models trained with --cond-prob (CMMD-style), not zero-shot")
        scale = gr.Slider(0, 10, value=DEFAULT_GRADIENT_SCALE, step=0.1, label="lambda (gradient guidance weight)")
    start = gr.Number(0, minimum=0, maximum=3600, label="Start at (s)", elem_id="condition-start", info=START_INFO)
    media.change(lambda m, c, u: start_hint(ctx, m, c, u), [media, choice, upload_ckpt], start,
                 api_visibility="private", show_progress="hidden")
    rows, labels = example_rows()
    gr.Examples(rows, [direction, media, mode, scale], example_labels=labels,
                label="Examples: synthetic clips like the shipped model's training data (real media are out of "
                      "its distribution: see the scope line)")
    sampler, steps, seed, num, eta, order = sampler_controls(ctx, batch=False, prefix="cond")
    with gr.Row():
        go = gr.Button("Generate from condition", variant="primary", elem_id="condition-btn")
        stop = gr.Button("Cancel", variant="stop")
    status = gr.Markdown("", elem_id="condition-status")
    with gr.Row():
        with gr.Column():
            gr.Markdown("**Condition** (as the model sees it)")
            cond_video = gr.Video(label=f"given video: shown {VIEW_PX} px, sharp pixels", interactive=False, buttons=[],
                                  height=PLAYER_PX, width=PLAYER_PX)
            cond_audio = gr.Audio(label="given audio", interactive=False, type="filepath")
            cond_spec = gr.Image(label="condition: frames / spectrogram", type="filepath", interactive=False)
        with gr.Column():
            gr.Markdown("**Result**")
            preview = gr.Image(label="live preview", type="numpy", height=120, interactive=False)
            result = gr.Video(label=f"result, video with sound: shown {VIEW_PX} px, sharp pixels (downloads: "
                                    "native size)", interactive=False, buttons=[], height=PLAYER_PX,
                              width=PLAYER_PX, elem_id="condition-result")
            with gr.Row():
                generated_audio = gr.Audio(label="generated soundtrack", interactive=False, type="filepath",
                                           visible=False, elem_id="condition-generated-audio")
                original_audio = gr.Audio(label="original soundtrack of the upload (same span, model's rate)",
                                          interactive=False, type="filepath", visible=False,
                                          elem_id="condition-original-audio")
            result_spec = gr.Image(label="result: frames, mel spectrogram, onsets", type="filepath",
                                   interactive=False, elem_id="condition-result-spec")
    files = gr.File(label="Downloads", file_count="multiple", interactive=False)

    @ctx.handler(JOB)
    def run(choice, upload_ckpt, direction, media, mode, scale, sampler, steps, seed, eta, order, start=0.0,
            request: gr.Request = None, progress=gr.Progress()):
        started = time.monotonic()
        spec_ = spec_from(ctx, sampler, steps, seed, 1, eta, order)
        ckpt = checked_checkpoint(ctx, choice, upload_ckpt)
        progress(0, desc="loading model")
        model, _ = ctx.store.get(ckpt)
        cfg = model.config
        if mode == "trained" and not trained_for_conditioning(model):
            raise user_error(f"{Path(ckpt).name} was not trained with --cond-prob, so it has no trained "
                           "conditioning: choose replacement or gradient (zero-shot), or a model trained with "
                           "python -m mmdiff.train --cond-prob 0.5")
        modality = "video" if direction == V2A else "audio"
        progress(0, desc="reading the upload")
        notices: list[str] = []
        value = (condition_video if modality == "video" else condition_audio)(media, cfg, ctx.limits, start=start,
                                                                              notices=notices)
        original = original_soundtrack(media, cfg, ctx.limits, start=start) if modality == "video" else None
        if modality == "video" and original is None:
            notices.append(f"{Path(media).name} has no soundtrack to compare with")
        note = "".join(f"  \nNote: {html.escape(n, quote=False)}" for n in notices)
        out = ctx.job_dir(request, "condition")
        given_v, given_a, given_png, given_native = write_condition(out, modality, value, cfg)
        original_wav = write_wav(out / "original.wav", original, cfg.audio_rate) if original is not None else None
        cond = Condition(modality, condition_tensor(modality, value), mode=mode, scale=float(scale))
        first = (gr.Video(value=str(given_v) if given_v else None, visible=given_v is not None),
                 gr.Audio(value=str(given_a) if given_a else None, visible=given_a is not None), str(given_png))
        yield (*first, *skips(3), "sampling ..." + note, *skips(3))
        res = None
        for kind, v in stream_job(ctx, request, lambda on_step, cancel: run_generation(
                ctx.store, ckpt, spec_, condition=cond, on_step=on_step, cancel=cancel), progress, JOB):
            if kind == "progress":
                text, image = v
                yield (*skips(3), gr.skip() if image is None else image, *skips(2), text + note, *skips(3))
            else:
                res = v
        cfg, video, audio = res
        clip = write_clips(out, cfg, video, audio, prefix="result", view_px=VIEW_PX,
                           titles=[f"{direction.split(':')[0]} result"])[0]
        msg = (f"{'Audio' if modality == 'video' else 'Video'} generated for {html.escape(Path(media).name)} "
               f"with {mode}{f' (lambda {float(scale):g})' if mode == 'gradient' else ''}, {spec_.sampler} "
               f"{spec_.steps} steps, seed {spec_.seed}" + (f", from {float(start):g} s" if start else "")
               + f"; took {time.monotonic() - started:.1f} s." + note)
        all_files = [str(p) for p in (*clip.downloads, given_png, given_native, given_a, original_wav) if p]
        heard = modality == "video"               # video -> audio: the generated and the original sound side by side
        yield (*first, gr.skip(), str(clip.view), str(clip.png), msg, all_files,
               gr.Audio(value=str(clip.wav) if heard else None, visible=heard),
               gr.Audio(value=str(original_wav) if original_wav else None, visible=original_wav is not None))

    # New inputs and outputs go at the end, so positional API calls of older clients keep working.
    event = go.click(run, [choice, upload_ckpt, direction, media, mode, scale, sampler, steps, seed, eta, order, start],
                     [cond_video, cond_audio, cond_spec, preview, result, result_spec, status, files,
                      generated_audio, original_audio],
                     api_name="condition", concurrency_id="model", concurrency_limit=1, show_progress_on=[status])
    ctx.show_errors(event, status, JOB)
    return event, stop, status
