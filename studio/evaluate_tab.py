"""Evaluate tab: FVD / KVD / FAD / AV-Align of a model or a folder of clips against real data."""
from __future__ import annotations

import html

import gradio as gr
import pandas as pd

from eval.config import PROTOCOL_DESCRIPTIONS, PROTOCOLS
from eval.dashboard import (METRICS, EvalCancelled, EvalRequest, missing_weights, results_rows, run_evaluation,
                            save_results)
from eval.protocol import ProtocolError, format_table
from mmdiff.diffusion.samplers import SAMPLERS
from studio.context import StudioContext, user_error
from studio.generate_tab import checked_checkpoint, model_picker, watch_model

FROM_MODEL, FROM_FOLDER = "samples of a model", "a folder of clips"
JOB = "evaluate"                  # cancel-event kind: this tab's Cancel stops only evaluations
CANCELLING = ("**Evaluation cancelled.** It stops after the batch it is on; the batches already done stay "
              "cached, so pressing Evaluate again with the same settings resumes from them.")


def cancelled_report(e: EvalCancelled, help_md: str = "") -> str:
    """The report of a run stopped by Cancel: where it stopped and how to resume (no stack trace)."""
    md = (f"**Evaluation cancelled** {e.where}. The batches it finished are cached: press Evaluate again "
          "with the same settings to resume from them.")
    return md + ("\n\n" + help_md if help_md else "")


def weights_help(problems: dict[str, str]) -> str:
    parts = ["### Weights missing", "These metrics were skipped because their feature network's weights are "
             "not on this machine (nothing is downloaded, and nothing is ever computed with random weights):"]
    for metric, msg in problems.items():
        parts.append(f"**{html.escape(metric)}**\n\n```\n{msg}\n```")
    parts.append("After copying the file(s), press Evaluate again. `requirements-weights.txt` lists them.")
    return "\n\n".join(parts)


def build(ctx: StudioContext, cache_dir: str):
    gr.Markdown("Run the evaluation protocol (paper Sec. 4.2) on N clips per set. FVD/KVD use I3D, FAD uses "
                "AudioCLIP (or CLAP), AV-Align needs no weights. Paths are folders in the studio's workspace.")
    real = gr.Textbox(label="Real data: folder of video clips with sound", placeholder="data/real_clips")
    source = gr.Radio([FROM_MODEL, FROM_FOLDER], value=FROM_FOLDER, label="Evaluate")
    fake = gr.Textbox(label="Folder of generated clips", placeholder="samples/")
    choice, upload, scope = model_picker(ctx, prefix="eval")
    watch_model(ctx, choice, upload, scope)
    with gr.Row():
        metrics = gr.CheckboxGroup(list(METRICS), value=["fvd", "kvd", "fad", "av-align"], label="Metrics")
    with gr.Row():
        num = gr.Number(64, precision=0, minimum=2, label="N clips per set (paper: 2,048)")
        runs = gr.Number(1, precision=0, minimum=1, label="runs (paper: 6)")
        steps = gr.Number(50, precision=0, minimum=1, label="sampler steps (model only)")
    with gr.Accordion("Sampler settings (model only) and protocol", open=False):
        with gr.Row():
            # the Generate tab's defaults (stochastic DDIM 50, eta 1), so what is evaluated is what it makes
            sampler = gr.Radio(sorted(SAMPLERS), value="ddim", label="Sampler",
                               info="the paper used DPM-Solver++ with 20 steps")
            eta = gr.Slider(0, 1, value=1, step=0.05, label="DDIM eta")
            order = gr.Radio([1, 2, 3], value=3, label="DPM-Solver++ order")
        protocol = gr.Radio(list(PROTOCOLS), value="mmdiff", label="Protocol",
                            info="; ".join(f"{k}: {v}" for k, v in PROTOCOL_DESCRIPTIONS.items()))
    weights_dir = gr.Textbox(label="Weights folder (empty: $MMDIFF_WEIGHTS_DIR or ~/.cache/mmdiff/weights)")
    with gr.Row():
        go = gr.Button("Evaluate", variant="primary", elem_id="evaluate-btn")
        stop = gr.Button("Cancel", variant="stop", elem_id="evaluate-cancel")
    report = gr.Markdown("", elem_id="evaluate-report")
    table = gr.Dataframe(label="Results (mean, std and each run)", interactive=False)
    plot = gr.Image(label="Results", type="filepath", interactive=False)
    files = gr.File(label="results.json / results.csv / table / plot", file_count="multiple", interactive=False)

    @ctx.handler(JOB)
    def evaluate(real, source, fake, choice, upload, metrics, num, runs, steps, weights_dir,
                 sampler="ddim", eta=1.0, order=3, protocol="mmdiff",
                 request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
        if not metrics:
            raise user_error("choose at least one metric")
        if protocol not in PROTOCOLS:
            raise user_error(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        real_dir = ctx.server_path(real, "real data folder", must_be_dir=True)
        wdir = ctx.server_path(weights_dir, "weights folder", must_be_dir=True) if weights_dir else None
        problems = missing_weights(metrics, wdir, protocol=protocol)
        runnable = [m for m in metrics if m not in problems]
        help_md = weights_help(problems) if problems else ""
        if not runnable:
            return help_md, None, None, None
        if source == FROM_FOLDER:
            fake_dir, ckpt, name = ctx.server_path(fake, "folder of generated clips", must_be_dir=True), None, fake
        else:
            fake_dir = None
            ckpt = checked_checkpoint(ctx, choice, upload) or ctx.store.resolve(None)
            name = ckpt.name
        req = EvalRequest(real=str(real_dir), fake=str(fake_dir) if fake_dir else None,
                          ckpt=str(ckpt) if ckpt else None, metrics=tuple(runnable), num_samples=int(num),
                          runs=int(runs), steps=int(steps), weights_dir=str(wdir) if wdir else None,
                          cache_dir=cache_dir, device=str(ctx.store.device), sampler=str(sampler),
                          eta=float(eta), order=int(order), protocol=protocol)
        progress(0, desc="evaluating")
        cancel = ctx.new_cancel(request, JOB)            # set by this tab's Cancel button
        try:
            results = run_evaluation(req, should_stop=cancel.is_set)
        except ProtocolError as e:
            raise user_error(str(e)) from None
        except EvalCancelled as e:
            return cancelled_report(e, help_md), None, None, None
        finally:
            ctx.drop_cancel(request, cancel, JOB)
        out = ctx.job_dir(request, "evaluate")
        paths = save_results(results, out, str(name))
        header, rows = results_rows(results)
        md = f"```\n{format_table(results, str(name))}\n```"
        if help_md:
            md += "\n\n" + help_md
        return (md, pd.DataFrame(rows, columns=header), str(paths["plot"]),
                [str(paths[k]) for k in ("json", "csv", "table", "plot")])

    event = go.click(evaluate, [real, source, fake, choice, upload, metrics, num, runs, steps, weights_dir,
                                sampler, eta, order, protocol],
                     [report, table, plot, files], api_name="evaluate", concurrency_id="evaluate",
                     concurrency_limit=1, show_progress_on=[report])
    ctx.show_errors(event, report, JOB)
    return event, stop, report
