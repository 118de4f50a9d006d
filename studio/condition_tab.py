"""Zero-shot conditioning tab: a video in, its audio out (or an audio file in, its video out), side by side."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import gradio as gr

from mmdiff.data.av_io import AVClip, write_clip, write_wav
from mmdiff.diffusion.guidance import DEFAULT_GRADIENT_SCALE, Condition
from mmdiff.generate import trained_for_conditioning
from mmdiff.jobs import run_generation, write_clips
from mmdiff.uploads import condition_audio, condition_tensor, condition_video
from mmdiff.viz import clip_figure, save_png
from studio.context import StudioContext, user_error
from studio.generate_tab import checked_checkpoint, model_picker, sampler_controls, spec_from
from studio.runner import stream_job

JOB = "condition"                 # cancel-event kind: this tab's Cancel stops only its own jobs

V2A = "video → audio: upload a video, generate its sound"
A2V = "audio → video: upload a sound, generate its video"


def build(ctx: StudioContext):
    gr.Markdown("Generate the missing modality for a given one (paper Sec. 3.4). *Replacement* re-noises the "
                "given stream at every step; *gradient* also guides the generated stream with weight lambda "
                "(start from 1 with DPM-Solver++/DDIM). The model uses the first clip-length seconds.")
    choice, upload_ckpt = model_picker(ctx)
    direction = gr.Radio([V2A, A2V], value=V2A, label="Direction")
    media = gr.File(label="Condition file (video: mp4/mov/webm/mkv/avi; audio: wav/flac/mp3/ogg/m4a or a video "
                          "with sound)", type="filepath", elem_id="condition-upload")
    with gr.Row():
        mode = gr.Radio(["replacement", "gradient", "trained"], value="gradient", label="Method",
                        info="trained: models trained with --cond-prob (CMMD-style), not zero-shot")
        scale = gr.Slider(0, 10, value=DEFAULT_GRADIENT_SCALE, step=0.1, label="lambda (gradient guidance weight)")
    start = gr.Number(0, minimum=0, maximum=3600, label="Start at (s)", elem_id="condition-start",
                      info="where in the upload the clip begins (the model uses 1.6 s from there); shorter "
                           "audio is padded with silence")
    sampler, steps, seed, num, eta, order = sampler_controls(ctx, batch=False, prefix="cond")
    with gr.Row():
        go = gr.Button("Generate from condition", variant="primary", elem_id="condition-btn")
        stop = gr.Button("Cancel", variant="stop")
    status = gr.Markdown("", elem_id="condition-status")
    with gr.Row():
        with gr.Column():
            gr.Markdown("**Condition** (as the model sees it)")
            cond_video = gr.Video(label="given video", interactive=False, height=240)
            cond_audio = gr.Audio(label="given audio", interactive=False, type="filepath")
            cond_spec = gr.Image(label="condition: frames / spectrogram", type="filepath", interactive=False)
        with gr.Column():
            gr.Markdown("**Result**")
            preview = gr.Image(label="live preview", type="numpy", height=120, interactive=False)
            result = gr.Video(label="result (video with sound)", interactive=False, buttons=["download"],
                              height=240, elem_id="condition-result")
            result_spec = gr.Image(label="result: frames, mel spectrogram, onsets", type="filepath",
                                   interactive=False, elem_id="condition-result-spec")
    files = gr.File(label="Downloads", file_count="multiple", interactive=False)

    @ctx.handler(JOB)
    def run(choice, upload_ckpt, direction, media, mode, scale, sampler, steps, seed, eta, order, start=0.0,
            request: gr.Request = None, progress=gr.Progress()):
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
        note = "".join(f"  \nNote: {html.escape(n, quote=False)}" for n in notices)
        out = ctx.job_dir(request, "condition")
        if modality == "video":
            given_v = write_clip(out / "condition.mp4", value, np.zeros(cfg.audio_samples, np.float32),
                                 cfg.fps, cfg.audio_rate)
            given_a = None
            fig = clip_figure(AVClip(value, None, cfg.fps, cfg.audio_rate, "condition"))
        else:
            given_v, given_a = None, write_wav(out / "condition.wav", value, cfg.audio_rate)
            fig = clip_figure(AVClip(None, value, cfg.fps, cfg.audio_rate, "condition"))
        given_png = save_png(fig, out / "condition.png")
        cond = Condition(modality, condition_tensor(modality, value), mode=mode, scale=float(scale))
        first = (gr.Video(value=str(given_v) if given_v else None, visible=given_v is not None),
                 gr.Audio(value=str(given_a) if given_a else None, visible=given_a is not None), str(given_png))
        yield (*first, gr.skip(), gr.skip(), gr.skip(), "sampling ..." + note, gr.skip())
        res = None
        for kind, v in stream_job(ctx, request, lambda on_step, cancel: run_generation(
                ctx.store, ckpt, spec_, condition=cond, on_step=on_step, cancel=cancel), progress, JOB):
            if kind == "preview":
                yield (gr.skip(), gr.skip(), gr.skip(), v, gr.skip(), gr.skip(), gr.skip(), gr.skip())
            else:
                res = v
        cfg, video, audio = res
        clip = write_clips(out, cfg, video, audio, prefix="result", titles=[f"{direction.split(':')[0]} result"])[0]
        msg = (f"{'Audio' if modality == 'video' else 'Video'} generated for {html.escape(Path(media).name)} "
               f"with {mode}{f' (lambda {float(scale):g})' if mode == 'gradient' else ''}, {spec_.sampler} "
               f"{spec_.steps} steps, seed {spec_.seed}" + (f", from {float(start):g} s" if start else "") + "." + note)
        all_files = [str(p) for p in (clip.mp4, clip.wav, clip.png, given_png, given_v, given_a) if p]
        yield (*first, gr.skip(), str(clip.mp4), str(clip.png), msg, all_files)

    event = go.click(run, [choice, upload_ckpt, direction, media, mode, scale, sampler, steps, seed, eta, order, start],
                     [cond_video, cond_audio, cond_spec, preview, result, result_spec, status, files],
                     api_name="condition", concurrency_id="model", concurrency_limit=1, show_progress_on=[status])
    ctx.show_errors(event, status, JOB)
    return event, stop, status
