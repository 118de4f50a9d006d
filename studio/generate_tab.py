"""Generate tab: joint audio-video samples (unconditional, or from a prompt for a text model, optionally in two
steps: video, then its audio) with live previews, players, downloads and spectrograms."""
from __future__ import annotations

import html
import secrets
import time
from pathlib import Path

import gradio as gr

from mmdiff.checkpoint import CheckpointError, load_checkpoint
from mmdiff.cliargs import MAX_SEED
from mmdiff.data.synthetic import example_captions
from mmdiff.defaults import AUDIO_GUIDANCE_SCALE, GUIDANCE_SCALE
from mmdiff.diffusion.samplers import SAMPLERS
from mmdiff.jobs import JobSpec, run_generation, run_upscale, write_clips, zip_clips
from mmdiff.modelcard import ModelCard, scope_line
from studio.context import StudioContext, md_escape, md_text, ui_text, user_error
from studio.runner import stream_job

JOB = "generate"                  # cancel-event kind: this tab's Cancel stops only its own jobs
VIEW_PX = 256                     # clips smaller than this are shown blown up (nearest neighbour) to about it
PLAYER_PX = VIEW_PX + 2           # a player this size shows a VIEW_PX video pixel for pixel (no smoothing)
GRID_COLUMNS = 4                  # result slots per row
# (label, sampler, steps, seed, batch, eta): the shipped model's probability-flow ODE is clean (v-prediction,
# tests/test_model_clean.py), so the paper's fast solver is the default; the others to compare
SETTING_EXAMPLES = [
    ("DPM-Solver++, 20 steps, seed 1, 4 clips (the default: the paper's solver)", "dpm-solver++", 20, 1, 4, 0.0),
    ("deterministic DDIM, 20 steps, seed 3, 4 clips", "ddim", 20, 3, 4, 0.0),
    ("stochastic DDIM, 50 steps, seed 5, 4 clips (2.5x the model calls)", "ddim", 50, 5, 4, 1.0),
    ("MM-Diffusion's released DPM-Solver setting, 20 steps, seed 1, 4 clips", "mm-diffusion-dpm-solver", 20, 1, 4, 0.0),
]


def model_picker(ctx: StudioContext, prefix: str = "gen"):
    """Checkpoint dropdown + upload + refresh + the scope line of the chosen model (kept up to date);
    returns (dropdown, upload, scope line)."""
    with gr.Row():
        choice = gr.Dropdown(ctx.checkpoint_choices(), value=ctx.default_choice(), label="Model checkpoint",
                             info="the shipped default, --ckpt, or *.pt files found in the workspace", scale=4,
                             elem_id=f"{prefix}-ckpt")
        refresh = gr.Button("Rescan", scale=0, size="sm")
    with gr.Accordion("Upload a checkpoint (.pt)", open=False):
        upload = gr.File(label="checkpoint: an mmdiff .pt, or a released MM-Diffusion AIST++.pt / Landscape.pt "
                               "(converted on upload, mmdiff.convert)", file_types=[".pt"], type="filepath",
                         elem_id=f"{prefix}-ckpt-upload")
    refresh.click(lambda: gr.Dropdown(choices=ctx.checkpoint_choices()), None, choice, api_visibility="private")
    scope = gr.Markdown(scope_markdown(model_card(ctx, ctx.default_choice(), None)), elem_id=f"{prefix}-scope")
    return choice, upload, scope


def watch_model(ctx: StudioContext, choice, upload, scope, extra=(), on_card=None) -> None:
    """When another model is chosen or uploaded: its card is read once, the scope line rewritten, and
    `on_card(card)` gives the updates of the `extra` outputs (e.g. the prompt box)."""
    def changed(choice_, upload_):
        card = model_card(ctx, choice_, upload_)
        return (scope_markdown(card), *(on_card(card) if on_card else ()))

    gr.on([choice.change, upload.change], changed, [choice, upload], [scope, *extra], api_visibility="private",
          show_progress="hidden")


def model_card(ctx: StudioContext, choice, upload) -> ModelCard | str:
    """The chosen model's card (mmdiff.modelcard, weights not loaded), or why it cannot be read."""
    try:
        return ctx.store.card(checked_checkpoint(ctx, choice, upload))
    except gr.Error as e:
        return e.message
    except (CheckpointError, FileNotFoundError) as e:
        return html.escape(ui_text(str(e)), quote=False)


def scope_markdown(card: ModelCard | str) -> str:
    """The scope line: what the chosen model makes and knows, and what real media give with it."""
    if isinstance(card, str):
        return f"**Scope:** this checkpoint cannot be read: {md_escape(card)}"
    return f"**Scope:** {md_text(scope_line(card))}"


def takes_prompt(card: ModelCard | str) -> bool:
    return isinstance(card, ModelCard) and card.takes_prompt


def random_seed() -> int:
    """A new seed from 0 to MAX_SEED, from the operating system's entropy (no global RNG is read or moved)."""
    return secrets.randbelow(MAX_SEED + 1)


def released_upload(path: Path) -> Path | None:
    """An uploaded released MM-Diffusion file (AIST++.pt / Landscape.pt), converted once (mmdiff.convert)."""
    from mmdiff.convert import ConvertError, converted_upload

    try:
        return converted_upload(path)
    except ConvertError as e:
        raise user_error(f"uploaded MM-Diffusion file {Path(path).name} cannot be converted: {e}") from None


def checked_checkpoint(ctx: StudioContext, choice, upload):
    path = ctx.checkpoint_for(choice, upload)
    if upload:
        try:
            load_checkpoint(path)                   # weights_only=True: no code in an upload is run
        except CheckpointError as e:
            converted = released_upload(path) if "not an mmdiff checkpoint" in str(e) else None
            if converted is not None:
                return converted
            reason = "it is truncated or corrupt" if "truncated or corrupt" in str(e) else (
                "it holds no weights" if "holds no weights" in str(e) else "it is not a file written by mmdiff")
            raise user_error(f"uploaded checkpoint {Path(upload).name} cannot be used: {reason}. Upload a .pt "
                           "written by python -m mmdiff.train (last.pt) or mmdiff.checkpoint.export_inference.")
    return path


def sampler_controls(ctx: StudioContext, batch: bool = True, prefix: str = "gen", show_seed: bool = True):
    """The sampler, steps, seed, batch size, eta and order inputs (the Evaluate tab's too: one set of samplers,
    defaults and ranges); `batch`, `show_seed`: whether the batch size and the seed are shown."""
    with gr.Row():
        # Default: DPM-Solver++ 20, the paper's fast solver (the shipped model's ODE is clean, README)
        sampler = gr.Radio(sorted(SAMPLERS), value="dpm-solver++", label="Sampler",
                           info="DDPM always runs all 1,000 steps; the paper: mm-diffusion-dpm-solver, 20 steps")
        steps = gr.Slider(1, 200, value=20, step=1, label="Steps")
    with gr.Row(equal_height=True, visible=batch or show_seed):
        seed = gr.Number(0, precision=0, label="Seed", minimum=0, maximum=MAX_SEED, elem_id=f"{prefix}-seed",
                         scale=3, visible=show_seed)
        dice = gr.Button("Random seed", size="sm", scale=1, min_width=90, elem_id=f"{prefix}-random-seed",
                         visible=show_seed)
        num = gr.Slider(1, ctx.max_batch, value=1, step=1, label="Batch size", visible=batch, scale=4)
    dice.click(random_seed, None, seed, api_visibility="private", queue=False)
    with gr.Accordion("Sampler settings", open=False):
        eta = gr.Slider(0, 1, value=0, step=0.05, label="DDIM eta", info="1: stochastic (DDPM-like), 0: deterministic")
        order = gr.Radio([2, 3], value=3, label="DPM-Solver++ order")
    return sampler, steps, seed, num, eta, order


def spec_from(ctx, sampler, steps, seed, num, eta, order, prompt="", guidance_scale=3.0, two_step=False,
              audio_guidance_scale=None) -> JobSpec:
    """The job of the tab's inputs; `audio_guidance_scale` None guides the audio at `guidance_scale`."""
    if seed is None or not 0 <= int(seed) <= MAX_SEED:
        raise user_error(f"Seed must be a whole number from 0 to {MAX_SEED}")
    return JobSpec(num=int(num), seed=int(seed), sampler=sampler, steps=int(steps), eta=float(eta),
                   order=int(order), max_num=ctx.max_batch, prompt=(prompt or "").strip(),
                   guidance_scale=float(3.0 if guidance_scale is None else guidance_scale), two_step=bool(two_step),
                   audio_guidance_scale=None if audio_guidance_scale is None else float(audio_guidance_scale))


def text_controls(visible: bool = True):
    """Prompt, the video's and the audio's guidance scales and the two-step switch (used by models trained with
    --text-cond), with example prompts worded as the synthetic clips' captions; returns (accordion, prompt,
    scale, audio scale, two_step)."""
    with gr.Accordion("Text prompt (models trained with --text-cond)", open=True, visible=visible,
                      elem_id="gen-text") as box:
        prompt = gr.Textbox("", label="Prompt", lines=1, elem_id="gen-prompt",
                            placeholder="e.g. a red ball bounces twice; each bounce makes a high click",
                            info="empty: unconditional. Only models trained with captions can follow a prompt.")
        with gr.Row():
            scale = gr.Slider(0, 10, value=GUIDANCE_SCALE, step=0.5, label="Guidance scale (video)",
                              elem_id="gen-guidance-scale",
                              info="classifier-free guidance: 0 ignores the prompt, 1 conditional, >1 stronger")
            audio_scale = gr.Slider(0, 10, value=AUDIO_GUIDANCE_SCALE, step=0.5, label="Guidance scale (audio)",
                                    elem_id="gen-audio-guidance-scale",
                                    info="1 (conditional) keeps the audio clean between events; >1 adds background "
                                         "noise")
            two_step = gr.Checkbox(False, label="Two steps: video first, then its audio", elem_id="gen-two-step",
                                   info="Paredes et al.: generate the video from the prompt, then audio conditioned "
                                        "on that video and the prompt (twice the sampling time)")
        captions = example_captions()
        rows = [[c, GUIDANCE_SCALE, AUDIO_GUIDANCE_SCALE, k == len(captions)]
                for k, c in enumerate(captions + captions[:1])]
        gr.Examples(rows, [prompt, scale, audio_scale, two_step],
                    label="Example prompts: the synthetic clips' captions (one per class; the last in two steps)")
    return box, prompt, scale, audio_scale, two_step


def prompt_box(card: ModelCard | str):
    """The prompt accordion shown only for a model that takes prompts; hiding it clears the prompt and the
    two-step switch, so nothing unseen changes the next clip."""
    if takes_prompt(card):
        return gr.Accordion(visible=True), gr.skip(), gr.skip()
    return gr.Accordion(visible=False), "", False


def check_prompt(model_config, ckpt, prompt) -> None:
    """gr.Error before sampling when a prompt is given to a model trained without text."""
    if (prompt or "").strip() and not model_config.text_dim:
        name = f"the model {Path(str(ckpt)).name}" if ckpt else "the shipped default model"
        raise user_error(f"{name} was trained without text conditioning, so it cannot follow "
                       "a prompt: leave the prompt empty for unconditional samples, or choose a model trained with "
                       "`python -m mmdiff.train --text-cond`")


def result_grid(ctx: StudioContext):
    """ctx.max_batch result slots (column, player, spectrogram view), GRID_COLUMNS to a row."""
    slots = []
    for first in range(0, ctx.max_batch, GRID_COLUMNS):
        with gr.Row(equal_height=False):
            for k in range(first, min(first + GRID_COLUMNS, ctx.max_batch)):
                with gr.Column(visible=k == 0, min_width=200) as col:
                    video = gr.Video(label=f"clip {k}: shown {VIEW_PX} px, sharp pixels (files below: native size)",
                                     interactive=False, buttons=[], elem_id=f"gen-video-{k}", height=PLAYER_PX,
                                     width=PLAYER_PX)
                    spec = gr.Image(label=f"clip {k}: frames, mel spectrogram, onsets", type="filepath",
                                    interactive=False, elem_id=f"gen-spec-{k}")
                slots.append((col, video, spec))
    return slots


def slot_updates(slots, clips) -> list:
    """Show one slot per clip (its display copy and spectrogram view), hide the rest."""
    updates = []
    for k in range(len(slots)):
        c = clips[k] if k < len(clips) else None
        updates += [gr.Column(visible=c is not None), str(c.view) if c else None, str(c.png) if c else None]
    return updates


def summary(clips, cfg, size: int, spec_: JobSpec, upscaled: bool, seconds: float) -> str:
    return (f"{len(clips)} clip(s), {cfg.duration:.1f} s each ({cfg.video_frames} frames of {size}x{size} at "
            f"{cfg.fps} fps, {cfg.audio_rate} Hz audio), {spec_.sampler} {spec_.steps} steps, seed {spec_.seed}"
            + (f', prompt "{md_text(spec_.prompt)}" at guidance {guidance_text(spec_)}' if spec_.prompt else "")
            + (", in two steps (video, then its audio)" if spec_.two_step else "")
            + (", upscaled by the SR stage" if upscaled else "") + f"; took {seconds:.1f} s.")


def guidance_text(spec_: JobSpec) -> str:
    """'3', or '6 (audio 1)' when the audio stream has its own scale."""
    audio = spec_.audio_guidance_scale
    own = audio is not None and audio != spec_.guidance_scale
    return f"{spec_.guidance_scale:g}" + (f" (audio {audio:g})" if own else "")


def setting_examples(ctx: StudioContext, inputs) -> None:
    rows = [(label, [sampler, steps, seed, min(num, ctx.max_batch), eta])
            for label, sampler, steps, seed, num, eta in SETTING_EXAMPLES]
    gr.Examples([r for _, r in rows], inputs, example_labels=[label for label, _ in rows],
                label="Examples: settings that give clean clips with the shipped model (click one, then Generate)")


def build(ctx: StudioContext):
    """Lay out the tab; returns (the generate event, its button) for the app to wire Cancel."""
    gr.Markdown("Sample new clips (video with sound) from a model. Each clip gets a player, a download and "
                "its spectrogram view: video frames, mel spectrogram and audio onsets on one time axis.")
    note = ctx.default_model_note()
    if note:
        gr.Markdown(note, elem_id="default-model-missing")
    choice, upload, scope = model_picker(ctx)
    shown = takes_prompt(model_card(ctx, ctx.default_choice(), None))
    box, prompt, guidance_scale, audio_guidance_scale, two_step = text_controls(shown)
    watch_model(ctx, choice, upload, scope, [box, prompt, two_step], prompt_box)
    sampler, steps, seed, num, eta, order = sampler_controls(ctx)
    setting_examples(ctx, [sampler, steps, seed, num, eta])
    with gr.Row():
        upscale = gr.Checkbox(False, label="Upscale 4x with the super-resolution stage (DDIM, per frame)",
                              info=ctx.sr_note(), elem_id="gen-upscale")
        sr_steps = gr.Slider(1, 100, value=25, step=1, label="Super-resolution steps (paper: 25)")
    with gr.Row():
        go = gr.Button("Generate", variant="primary", elem_id="generate-btn")
        stop = gr.Button("Cancel", variant="stop", elem_id="generate-cancel")
    with gr.Row():
        preview = gr.Image(label="Live preview (x0 estimate, frames 0/5/10/15)", type="numpy", height=160,
                           interactive=False, elem_id="generate-preview")
        status = gr.Markdown("", elem_id="generate-status")
    slots = result_grid(ctx)
    with gr.Row():
        files = gr.File(label="Downloads (mp4, wav, png at native size)", file_count="multiple", interactive=False,
                        scale=4)
        zipped = gr.DownloadButton("Download all (zip)", value=None, visible=False, elem_id="gen-download-all",
                                   scale=1)

    @ctx.handler(JOB)
    def generate(choice, upload, sampler, steps, seed, num, eta, order, upscale=False, sr_steps=25,
                 prompt="", guidance_scale=3.0, two_step=False, audio_guidance_scale=None,
                 request: gr.Request = None, progress=gr.Progress()):
        started = time.monotonic()
        spec_ = spec_from(ctx, sampler, steps, seed, num, eta, order, prompt, guidance_scale, two_step,
                          audio_guidance_scale)
        ckpt = checked_checkpoint(ctx, choice, upload)
        progress(0, desc="loading model")
        model, _ = ctx.store.get(ckpt)
        check_prompt(model.config, ckpt, spec_.prompt)
        if upscale:
            ctx.store.get_sr(ctx.sr_ckpt)               # a missing SR model is reported before sampling
        out = ctx.job_dir(request, "generate")
        skip = [gr.skip()] * (1 + 3 * ctx.max_batch) + [gr.DownloadButton(visible=False)]   # not the last zip
        result = None
        for kind, value in stream_job(ctx, request, lambda on_step, cancel: run_generation(
                ctx.store, ckpt, spec_, on_step=on_step, cancel=cancel), progress, JOB):
            if kind == "progress":
                text, image = value
                yield (gr.skip() if image is None else image, text, *skip)
            else:
                result = value
        cfg, video, audio = result
        if upscale and video is not None:
            for kind, value in stream_job(ctx, request, lambda on_step, cancel: run_upscale(
                    ctx.store, ctx.sr_ckpt, video, seed=spec_.seed, steps=int(sr_steps), on_step=on_step,
                    cancel=cancel),
                    progress, JOB, label="upscaling"):
                if kind == "progress":
                    yield (gr.skip(), value[0], *skip)
                else:
                    video = value
        progress(1.0, desc="writing clips")
        clips = write_clips(out, cfg, video, audio, prefix=f"seed{spec_.seed}", view_px=VIEW_PX,
                            titles=[f"seed {spec_.seed}, clip {k}" for k in range(spec_.num)])
        bundle = zip_clips(out / f"seed{spec_.seed}_all.zip", clips)
        size = video.shape[-1] if video is not None else cfg.video_size
        msg = summary(clips, cfg, size, spec_, upscale and video is not None, time.monotonic() - started)
        yield (gr.skip(), msg, [str(p) for c in clips for p in c.downloads], *slot_updates(slots, clips),
               gr.DownloadButton(value=str(bundle), visible=True))

    # New outputs go at the end too, so older clients find the earlier ones where they were.
    outputs = [preview, status, files] + [x for slot in slots for x in slot] + [zipped]
    # New inputs go at the end, with defaults, so positional API calls of older clients keep working.
    event = go.click(generate, [choice, upload, sampler, steps, seed, num, eta, order, upscale, sr_steps,
                                prompt, guidance_scale, two_step, audio_guidance_scale],
                     outputs, api_name="generate", concurrency_id="model", concurrency_limit=1,
                     show_progress_on=[status])
    ctx.show_errors(event, status, JOB)
    return event, stop, status
