"""Training monitor tab: loss curves and latest preview clips of a run folder."""
from __future__ import annotations

import html
import shutil

import gradio as gr

from mmdiff.training.runview import RunFolderError, loss_curve, read_run
from studio.context import StudioContext, user_error

PREVIEWS = 2


def build(ctx: StudioContext):
    gr.Markdown("Point at a run folder (the `--out` of `python -m mmdiff.train`, inside the workspace) to see "
                "its loss curves and latest preview samples. Tick auto-refresh while it trains.")
    with gr.Row():
        folder = gr.Textbox(label="Run folder", placeholder="runs/tiny", scale=4)
        refresh = gr.Button("Refresh", variant="primary", scale=0)
        auto = gr.Checkbox(False, label="auto-refresh (10 s)", scale=0)
    summary = gr.Markdown("", elem_id="monitor-summary")
    curve = gr.Image(label="loss (joint, video, audio; raw and smoothed)", type="filepath", interactive=False)
    with gr.Row():
        videos = [gr.Video(label=f"latest preview {k}", interactive=False, height=200) for k in range(PREVIEWS)]
    timer = gr.Timer(10, active=False)

    @ctx.handler("monitor")
    def show(folder, request: gr.Request):
        run_dir = ctx.server_path(folder, "run folder", must_be_dir=True)
        try:
            run = read_run(run_dir)
        except RunFolderError as e:
            raise user_error(str(e)) from None
        out = ctx.job_dir(request, "monitor")
        png = loss_curve(run, out / "loss.png")
        lines = [f"**{html.escape(run.folder.name)}**: {html.escape(run.describe())}"]
        lines.append(f"checkpoint: `{html.escape(run.checkpoint.name)}`" if run.checkpoint else "no checkpoint yet")
        if run.preview_step is not None:
            lines.append(f"previews from step {run.preview_step}")
        # copies in the app's own folder: the app serves only what it wrote
        vids = [str(shutil.copy2(run.previews[k], out / run.previews[k].name)) if k < len(run.previews) else None
                for k in range(PREVIEWS)]
        return ("  \n".join(lines), str(png) if png else None, *vids)

    event = refresh.click(show, folder, [summary, curve, *videos], api_name="monitor", show_progress_on=[summary])
    ctx.show_errors(event, summary, "monitor")
    timer.tick(show, folder, [summary, curve, *videos], api_visibility="private")
    auto.change(lambda on: gr.Timer(active=on), auto, timer, api_visibility="private")
