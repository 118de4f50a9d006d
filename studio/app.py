"""Build the studio: one Blocks app with a tab per task. All state lives in the StudioContext made here."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from mmdiff.device import resolve_device
from mmdiff.uploads import UploadLimits
from studio import condition_tab, evaluate_tab, generate_tab, monitor_tab, spectrogram_tab, study_tab
from studio.context import StudioContext

TITLE = "mmdiff studio"


def build_app(ckpt: str | None = None, device: str = "auto", workspace=(".",), limits: UploadLimits | None = None,
              max_batch: int = 4, concurrency: int = 2, queue_size: int = 32, work_root: str | None = None,
              eval_cache_dir: str | None = None, sr_ckpt: str | None = None) -> gr.Blocks:
    """The studio as a gr.Blocks with its queue set up; `app.studio` is its StudioContext (close() cleans up).

    :param ckpt: the model selected at start (None: the shipped default, mmdiff/assets/tiny-synthetic.pt)
    :param workspace: server folders the UI may read (real data, clip folders, run folders, checkpoints)
    :param concurrency: jobs that run at once across users (sampling on one model is serialised)
    :param sr_ckpt: the super-resolution stage behind "Upscale" (None: mmdiff/assets/sr-tiny-synthetic.pt)
    """
    ctx = StudioContext.create(ckpt=ckpt, device=resolve_device(device), workspace=workspace, limits=limits,
                               max_batch=max_batch, work_root=work_root, sr_ckpt=sr_ckpt)
    cache = str(Path(eval_cache_dir).expanduser()) if eval_cache_dir else str(ctx.work_root / "eval-cache")
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\nJoint audio-video diffusion (MM-Diffusion, CVPR 2023), rebuilt small. "
                    f"Uploads: up to {ctx.limits.max_bytes // 2**20} MB and {ctx.limits.max_seconds:g} s.")
        cancellable = []                  # (job kind, message on cancel, (event, Cancel button, status))
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                cancellable.append((generate_tab.JOB, "Cancelled.", generate_tab.build(ctx)))
            with gr.Tab("Zero-shot conditioning", id="condition"):
                cancellable.append((condition_tab.JOB, "Cancelled.", condition_tab.build(ctx)))
            with gr.Tab("Spectrograms", id="spectrograms"):
                spectrogram_tab.build(ctx)
            with gr.Tab("Evaluate", id="evaluate"):
                cancellable.append((evaluate_tab.JOB, evaluate_tab.CANCELLING, evaluate_tab.build(ctx, cache)))
            with gr.Tab("Study", id="study"):
                study_tab.build(ctx)
            with gr.Tab("Training monitor", id="monitor"):
                monitor_tab.build(ctx)
        for kind, message, (event, button, status) in cancellable:
            button.click(ctx.canceller(kind, message), None, status, cancels=[event], queue=False,
                         api_visibility="private")
    demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    demo.studio = ctx
    return demo


def launch_kwargs(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, share: bool = False) -> dict:
    """launch() arguments: serve only the app's own work folder; upload size capped by the limits."""
    ctx: StudioContext = demo.studio
    return dict(server_name=host, server_port=port, share=share, allowed_paths=[str(ctx.work_root)],
                max_file_size=ctx.limits.max_bytes, footer_links=["api", "settings"])


