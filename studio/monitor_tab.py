"""Training monitor tab: loss curves and latest preview clips of a run folder."""
from __future__ import annotations

import html
import shutil

import gradio as gr

from mmdiff.training.runview import SHIPPED_RUN, RunFolderError, RunSummary, loss_curve, read_run
from studio.context import StudioContext, user_error

PREVIEWS = 2
NO_PREVIEWS = ("no previews yet: `python -m mmdiff.train` samples 2 preview clips into previews/ every "
               "`--preview-every` steps (default 1,000; 0 turns them off, as in the shipped model's run)")


def summary_markdown(run: RunSummary) -> str:
    """The run's headline (smoothed loss of its current stage), its stages, checkpoint and previews."""
    lines = [f"**{html.escape(run.folder.name)}**: {html.escape(run.describe())}"]
    if len(run.stages) > 1:
        lines.append("stages on one step axis: " + "; ".join(
            f"{s.name} (`{html.escape(s.log.name)}`, steps {s.rows[0]['step'] if s.rows else 0}-{s.last_step}"
            + (f", shown after step {s.offset}" if s.offset else "") + ")" for s in run.stages))
    lines.append(f"checkpoint: `{html.escape(run.checkpoint.name)}`" if run.checkpoint else "no checkpoint yet")
    lines.append(f"previews from step {run.preview_step}" if run.preview_step is not None else NO_PREVIEWS)
    return "  \n".join(lines)


def build(ctx: StudioContext):
    gr.Markdown("Point at a run folder (the `--out` of `python -m mmdiff.train`, inside the workspace) to see "
                "its loss curves and latest preview samples. Tick auto-refresh while it trains.")
    with gr.Row():
        folder = gr.Textbox(label="Run folder", placeholder="runs/tiny", scale=4)
        refresh = gr.Button("Refresh", variant="primary", scale=0)
        auto = gr.Checkbox(False, label="auto-refresh (10 s)", scale=0)
    # in a clone of the repository: the shipped default model's run (stage 1 from scratch, stages 2-6 fine-tuned;
    # stages 3-6 predict v, so their loss is in other units; stage 5 trains only the caption branch on t >= 300,
    # stage 6 all weights again: README, "The shipped default model")
    shipped = gr.Button("Show the shipped model's training run (all its stages)", size="sm",
                        visible=SHIPPED_RUN.is_dir(), elem_id="monitor-shipped")
    summary = gr.Markdown("", elem_id="monitor-summary")
    curve = gr.Image(label="loss (joint, video, audio; raw and smoothed; a staged run's stages on one step axis)",
                     type="filepath", interactive=False)
    with gr.Row():
        videos = [gr.Video(label=f"latest preview {k}", interactive=False, height=200) for k in range(PREVIEWS)]
    timer = gr.Timer(10, active=False)

    def outputs(run_dir, request: gr.Request):
        try:
            run = read_run(run_dir)
        except RunFolderError as e:
            raise user_error(str(e)) from None
        out = ctx.job_dir(request, "monitor")
        png = loss_curve(run, out / "loss.png")
        # copies in the app's own folder: the app serves only what it wrote
        vids = [str(shutil.copy2(run.previews[k], out / run.previews[k].name)) if k < len(run.previews) else None
                for k in range(PREVIEWS)]
        return (summary_markdown(run), str(png) if png else None, *vids)

    @ctx.handler("monitor")
    def show(folder, request: gr.Request):
        return outputs(ctx.server_path(folder, "run folder", must_be_dir=True), request)

    @ctx.handler("monitor")
    def show_shipped(request: gr.Request):
        return outputs(SHIPPED_RUN, request)          # a fixed folder of the app's own, never a typed path

    views = [summary, curve, *videos]
    event = refresh.click(show, folder, views, api_name="monitor", show_progress_on=[summary])
    ctx.show_errors(event, summary, "monitor")
    shipped_event = shipped.click(show_shipped, None, views, api_name="monitor_shipped_run",
                                  show_progress_on=[summary])
    ctx.show_errors(shipped_event, summary, "monitor")
    timer.tick(show, folder, views, api_visibility="private")
    auto.change(lambda on: gr.Timer(active=on), auto, timer, api_visibility="private")
