"""Study tab: build a MOS / Turing-test batch for MTurk (download as zip) and analyse the results CSVs."""
from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr
import pandas as pd

from eval.study import StudyConfig, analyze_results, build_study
from eval.study.bundle import zip_study
from mmdiff.cliargs import MAX_SEED
from studio.context import StudioContext, md_text, ui_text, user_error


def parse_systems(ctx: StudioContext, text: str) -> dict[str, str]:
    """Lines `name=folder` -> {name: resolved folder inside the workspace}."""
    systems = {}
    for n, line in enumerate((text or "").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if "=" not in line:
            raise user_error(f"systems line {n} ({line}): write NAME=FOLDER")
        name, folder = (s.strip() for s in line.split("=", 1))
        if name in systems:
            raise user_error(f"system {name} is given twice")
        systems[name] = str(ctx.server_path(folder, f"clips folder of system {name}", must_be_dir=True))
    if not systems:
        raise user_error("give at least one system as NAME=FOLDER (one per line)")
    return systems


def table(rows: list[dict] | None) -> pd.DataFrame | None:
    return pd.DataFrame(rows) if rows else None


def build(ctx: StudioContext):
    study_dir = gr.State(None)        # the study built in this session (a folder the app wrote)
    gr.Markdown("### Build a study batch\nSamples clips from each system and the real data, makes gold "
                "checks, MTurk batch CSVs, HIT templates and an offline preview (docs/study.md).")
    with gr.Row():
        kind = gr.Radio(["mos", "turing"], value="mos", label="Study",
                        info="MOS: video/audio quality and alignment, 1-5; Turing: real vs generated")
        base_url = gr.Textbox("https://example.com/study/media", label="Base URL where media/ will be hosted")
    systems = gr.Textbox(label="Systems (one per line: NAME=FOLDER of clips)", lines=3, placeholder="ours=samples/")
    real = gr.Textbox(label="Real clips folder", placeholder="data/real_clips")
    with gr.Row():
        num = gr.Number(10, precision=0, minimum=1, label="clips per system")
        votes = gr.Number(5, precision=0, minimum=1, label="votes per clip")
        per_hit = gr.Number(10, precision=0, minimum=1, label="clips per HIT")
        gold = gr.Number(1, precision=0, minimum=0, label="gold clips per HIT")
        seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="seed")
    build_btn = gr.Button("Build study", variant="primary")
    build_md = gr.Markdown("")
    build_files = gr.File(label="study.zip (publish this) and key.json (keep private; needed to analyse)",
                          file_count="multiple", interactive=False)

    gr.Markdown("### Analyse MTurk results\nUpload the `Batch_*_batch_results.csv` files. The study is the one "
                "built above in this session, or upload its `private/key.json`.")
    results = gr.File(label="results CSVs", file_count="multiple", type="filepath", file_types=[".csv"])
    key = gr.File(label="key.json of the study (optional when built above)", type="filepath", file_types=[".json"])
    analyze_btn = gr.Button("Analyse", variant="primary")
    report = gr.Markdown("")
    with gr.Row():
        mos = gr.Dataframe(label="MOS (mean and 95% interval per task)", interactive=False)
        turing = gr.Dataframe(label="Turing test (pass rate: 'real' or 'cannot tell')", interactive=False)
    charts = gr.Gallery(label="charts", columns=2, height=320)
    analysis_files = gr.File(label="analysis files", file_count="multiple", interactive=False)

    @ctx.handler("study-build")
    def do_build(kind, base_url, systems_text, real, num, votes, per_hit, gold, seed, request: gr.Request,
                 progress=gr.Progress()):
        cfg = StudyConfig(kind=kind, systems=parse_systems(ctx, systems_text),
                          real=str(ctx.server_path(real, "real clips folder", must_be_dir=True)), num=int(num),
                          base_url=str(base_url).strip(), votes=int(votes), items_per_hit=int(per_hit),
                          gold=int(gold), seed=int(seed))
        out = ctx.job_dir(request, "study")
        progress(0, desc="building study")
        res = build_study(cfg, out / "study", progress=lambda s: progress(None, desc=s[:80]))
        zipped = zip_study(res.study_dir, out / f"study-{kind}.zip")
        key_copy = shutil.copy2(res.study_dir / "private" / "key.json", out / "key.json")
        lines = [f"Built a **{kind}** study: {res.num_items} clips, {res.num_gold} gold clips, tasks "
                 + ", ".join(f"`{t}`" for t in res.tasks) + "."]
        lines += [f"- skipped: {md_text(ui_text(s))}" for s in res.skipped]
        lines += [f"- warning: {md_text(ui_text(w))}" for w in res.warnings]
        lines.append("The zip holds `mturk/<task>/batch.csv`, `template.html`, `media/` and `preview/<task>.html` "
                     "(open it to try a HIT). Keep `key.json` private.")
        return str(res.study_dir), "\n".join(lines), [str(zipped), str(key_copy)]

    @ctx.handler("study-analyze")
    def do_analyze(results, key, built, request: gr.Request):
        if not results:
            raise user_error("upload at least one results CSV")
        out = ctx.job_dir(request, "analysis")
        if key:
            sdir = out / "study"
            (sdir / "private").mkdir(parents=True)
            shutil.copy2(key, sdir / "private" / "key.json")
        elif built:
            sdir = Path(built)
        else:
            raise user_error("no study: build one above or upload its key.json")
        res = analyze_results([Path(r) for r in results], sdir, out / "analysis")
        # report.md escapes what it quotes from the uploaded CSVs (worker ids, reasons: eval.study.report);
        # the problems quote answers and file paths: escaped here, server paths cut to file names
        md = Path(res.paths["report"]).read_text() if "report" in res.paths else ""
        if res.problems:
            md += "\n\n**Problems in the input:**\n" + "\n".join(f"- {md_text(ui_text(p))}" for p in res.problems)
        pngs = [str(p) for k, p in res.paths.items() if str(p).endswith(".png")]
        files = [str(p) for p in res.paths.values() if Path(p).is_file()]
        return md, table(res.mos), table(res.turing), pngs, files

    built = build_btn.click(do_build, [kind, base_url, systems, real, num, votes, per_hit, gold, seed],
                            [study_dir, build_md, build_files], api_name="build_study", concurrency_id="study",
                            concurrency_limit=1, show_progress_on=[build_md])
    ctx.show_errors(built, build_md, "study-build")
    analyzed = analyze_btn.click(do_analyze, [results, key, study_dir], [report, mos, turing, charts, analysis_files],
                                 api_name="analyze_study", show_progress_on=[report])
    ctx.show_errors(analyzed, report, "study-analyze")
