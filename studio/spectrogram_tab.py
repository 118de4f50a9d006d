"""Spectrograms tab: frames, mel spectrogram and onset curve of one or two clips on a shared time axis."""
from __future__ import annotations

import html
from dataclasses import replace

import gradio as gr

from mmdiff.uploads import read_for_view
from mmdiff.viz import compare_figure, save_png
from studio.context import StudioContext, user_error

VIEW_FPS, VIEW_SIZE, VIEW_RATE, VIEW_SECONDS = 10.0, 64, 16_000, 10.0
NONE = "(none)"


def build(ctx: StudioContext):
    gr.Markdown(f"Pick a clip generated in this session or upload one (the first {VIEW_SECONDS:g} s are shown). "
                "Frames, mel spectrogram and audio onset strength share one time axis, so you can see "
                "whether sounds start when the picture changes. Give a second clip to compare.")
    with gr.Row():
        with gr.Column():
            a_pick = gr.Dropdown([NONE], value=NONE, label="Clip A: generated in this session")
            a_file = gr.File(label="... or upload clip A", type="filepath", elem_id="spec-upload-a")
        with gr.Column():
            b_pick = gr.Dropdown([NONE], value=NONE, label="Clip B (optional): generated in this session")
            b_file = gr.File(label="... or upload clip B", type="filepath")
    with gr.Row():
        refresh = gr.Button("Refresh session clips", size="sm")
        show = gr.Button("Show", variant="primary", elem_id="spec-show")
    status = gr.Markdown("", elem_id="spec-status")
    image = gr.Image(label="frames / mel spectrogram / onsets", type="filepath", interactive=False,
                     elem_id="spec-image")

    def refresh_lists(request: gr.Request):
        names = [NONE, *ctx.session_clips(request)]
        return gr.Dropdown(choices=names), gr.Dropdown(choices=names)

    def load(pick, upload, request, label, notices):
        if upload:
            path, title = upload, upload.replace("\\", "/").split("/")[-1]
        elif pick and pick != NONE:
            clips = ctx.session_clips(request)
            if pick not in clips:
                raise user_error(f"clip {pick} is not among this session's clips; press Refresh")
            path, title = clips[pick], pick
        else:
            return None
        clip = read_for_view(path, ctx.limits, VIEW_FPS, VIEW_SIZE, VIEW_RATE, VIEW_SECONDS, notices)
        return replace(clip, name=f"{label} ({title})")

    @ctx.handler("spectrogram")
    def view(a_pick, a_file, b_pick, b_file, request: gr.Request):
        notices: list[str] = []
        clips = [c for c in (load(a_pick, a_file, request, "A", notices), load(b_pick, b_file, request, "B", notices))
                 if c]
        if not clips:
            raise user_error("choose or upload a clip first")
        out = ctx.job_dir(request, "view")
        png = str(save_png(compare_figure(clips), out / "view.png"))
        return png, "  \n".join(f"Note: {html.escape(n, quote=False)}" for n in notices) or f"Showing {len(clips)} clip(s)."

    refresh.click(refresh_lists, None, [a_pick, b_pick], api_name="session_clips")
    event = show.click(view, [a_pick, a_file, b_pick, b_file], [image, status], api_name="spectrogram",
                       show_progress_on=[status])
    ctx.show_errors(event, status, "spectrogram")
