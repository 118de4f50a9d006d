"""Evaluate tab: FVD / KVD / FAD / AV-Align of a model or a folder of clips against real data."""
from __future__ import annotations

import html

import gradio as gr
import pandas as pd

from eval.config import PROTOCOL_DESCRIPTIONS, PROTOCOLS
from eval.dashboard import (METRICS, WEIGHTED, EvalCancelled, EvalRequest, missing_weights, results_rows,
                            run_evaluation, save_results)
from eval.protocol import ProtocolError, format_table
from eval.spread import small_n_warning
from studio.context import StudioContext, md_escape, md_text, user_error
from studio.generate_tab import checked_checkpoint, model_picker, sampler_controls, watch_model

FROM_MODEL, FROM_FOLDER = "samples of a model", "a folder of clips"
DEFAULT_METRICS = ("fvd", "kvd", "fad", "av-align")
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


def source_inputs(source: str):
    """Only the inputs that apply to the source: (folder of generated clips, model picker + sampler settings)."""
    folder = source == FROM_FOLDER
    return gr.update(visible=folder), gr.update(visible=not folder)


def weights_note(problems: dict[str, str]) -> str:
    """Beside the metrics: which ones are unticked because their weight file is missing, and where it goes."""
    if not problems:
        return ""
    lines = [f"- **{html.escape(m)}**: {md_text(msg)}" for m, msg in problems.items()]
    return "Unticked, weights missing (nothing is downloaded):\n" + "\n".join(lines)


def weight_ticks(selected, weights_dir: str | None, protocol: str = "mmdiff") -> tuple[list[str], str]:
    """(metrics to tick, note): the chosen metrics (and the default weighted ones, which come back once their
    weights are found) less those whose weights are missing in `weights_dir` (None: the default lookup)."""
    problems = missing_weights(sorted(WEIGHTED), weights_dir, protocol=protocol, short=True)
    wanted = set(selected or ()) | (set(DEFAULT_METRICS) & WEIGHTED)
    return [m for m in METRICS if m in wanted and m not in problems], weights_note(
        {m: msg for m, msg in problems.items() if m in wanted})


def build(ctx: StudioContext, cache_dir: str):
    gr.Markdown("Run the evaluation protocol (paper Sec. 4.2) on N clips per set. FVD/KVD use I3D, FAD uses "
                "AudioCLIP (or CLAP), AV-Align needs no weights. Paths are folders in the studio's workspace.")
    real = gr.Textbox(label="Real data: folder of video clips with sound", placeholder="data/real_clips")
    source = gr.Radio([FROM_MODEL, FROM_FOLDER], value=FROM_FOLDER, label="Evaluate")
    fake = gr.Textbox(label="Folder of generated clips", placeholder="samples/")
    with gr.Column(visible=False) as model_inputs:          # shown for "samples of a model" (source_inputs)
        choice, upload, scope = model_picker(ctx, prefix="eval")
        watch_model(ctx, choice, upload, scope)
        # the Generate tab's own controls: the same samplers, defaults (DPM-Solver++ 20) and ranges
        sampler, steps, _, _, eta, order = sampler_controls(ctx, batch=False, prefix="eval", show_seed=False)
    ticks, note = weight_ticks(DEFAULT_METRICS, None)
    with gr.Row():
        metrics = gr.CheckboxGroup(list(METRICS), value=ticks, label="Metrics", scale=2)
        metrics_note = gr.Markdown(note, elem_id="evaluate-weights-note")
    with gr.Row():
        num = gr.Number(64, precision=0, minimum=2, label="N clips per set (paper: 2,048)")
        runs = gr.Number(1, precision=0, minimum=1, label="runs (paper: 6)")
    n_note = gr.Markdown(small_n_warning(64, ticks), elem_id="evaluate-n-warning")
    with gr.Accordion("Protocol", open=False):
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
                 sampler="dpm-solver++", eta=0.0, order=3, protocol="mmdiff",
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
        table_md = f"```\n{format_table(results, str(name))}\n```"
        md = "\n\n".join(part for part in (table_md, small_n_warning(num, runnable), help_md) if part)
        return (md, pd.DataFrame(rows, columns=header), str(paths["plot"]),
                [str(paths[k]) for k in ("json", "csv", "table", "plot")])

    event = go.click(evaluate, [real, source, fake, choice, upload, metrics, num, runs, steps, weights_dir,
                                sampler, eta, order, protocol],
                     [report, table, plot, files], api_name="evaluate", concurrency_id="evaluate",
                     concurrency_limit=1, show_progress_on=[report])
    ctx.show_errors(event, report, JOB)
    source.change(source_inputs, source, [fake, model_inputs], api_visibility="private", queue=False)
    gr.on([num.change, metrics.change], small_n_warning, [num, metrics], n_note, api_visibility="private",
          queue=False)

    def recheck_weights(selected, folder, protocol):
        try:
            wdir = ctx.server_path(folder, "weights folder", must_be_dir=True) if folder else None
        except gr.Error as e:                              # still being typed: say so, leave the ticks alone
            return gr.skip(), md_escape(e.message)
        return weight_ticks(selected, str(wdir) if wdir else None, protocol if protocol in PROTOCOLS else "mmdiff")

    gr.on([weights_dir.change, protocol.change], recheck_weights, [metrics, weights_dir, protocol],
          [metrics, metrics_note], api_visibility="private", trigger_mode="always_last")
    return event, stop, report
