"""`python -m eval.study build|analyze|publish`: user studies on Mechanical Turk (see docs/study.md)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmdiff.cliargs import fail


def _system(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--system wants NAME=CLIPS_DIR, got {text!r}")
    return name, path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval.study", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="sample clips and write media, MTurk batch CSVs, templates and previews")
    b.add_argument("--kind", required=True, choices=("mos", "turing"), help="MOS (3 rating tasks) or Turing test")
    b.add_argument("--system", action="append", type=_system, required=True, metavar="NAME=CLIPS_DIR",
                   help="a system and its folder of generated clips (repeat for several systems)")
    b.add_argument("--real", required=True, help="folder of real (ground-truth) clips")
    b.add_argument("--num", type=int, required=True, help="clips sampled per system and from the real data")
    b.add_argument("--votes", type=int, default=5, help="workers (assignments) per HIT, i.e. votes per clip")
    b.add_argument("--base-url", required=True, help="https URL where STUDY_DIR/media/ will be served")
    b.add_argument("--out", required=True,
                   help="study folder to write: new or empty, or this same study (rerun to resume)")
    b.add_argument("--overwrite", action="store_true",
                   help="replace another study built in --out (its collected results can no longer be analysed)")
    b.add_argument("--items-per-hit", type=int, default=10, help="study clips per HIT (gold clips are added)")
    b.add_argument("--seed", type=int, default=0, help="seed of sampling, ids and HIT order")
    b.add_argument("--gold", type=int, default=1, help="gold (attention-check) clips per HIT")
    b.add_argument("--max-hits-per-worker", type=int, default=20,
                   help="per task; stated to workers and enforced by analyze (0: no cap)")
    b.add_argument("--keep-formats", action="store_true",
                   help="show each clip in its own format (default: every clip in the generated clips' size, frame "
                        "rate, length and audio format, real and gold clips cropped and cut to it, one encoder setting)")

    a = sub.add_parser("analyze", help="QC, MOS / Turing tables, charts, approve/reject CSV from results")
    a.add_argument("--results", nargs="+", required=True, help="Batch_*_batch_results.csv files from MTurk")
    a.add_argument("--key", required=True, help="the STUDY_DIR written by build (reads private/key.json)")
    a.add_argument("--out", default=None, help="output folder (default STUDY_DIR/analysis)")
    a.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals")
    a.add_argument("--gold-tolerance", type=float, default=0.0,
                   help="fraction of wrong gold answers a worker may have and still be counted")
    a.add_argument("--max-hits-per-worker", type=int, default=None,
                   help="count at most this many assignments per worker and task (default: the study's)")

    u = sub.add_parser("publish", help="create HIT types and HITs through the MTurk API (sandbox by default)")
    u.add_argument("--study", required=True, help="the STUDY_DIR written by build")
    u.add_argument("--live", action="store_true", help="publish to the live marketplace (pays real money)")
    u.add_argument("--reward", default="0.20", help="USD per assignment, e.g. 0.20")
    u.add_argument("--task", action="append", default=None, help="publish only this task (repeatable)")
    u.add_argument("--locale", action="append", default=None, help="restrict workers to a country code (live)")
    return p


def _build(args) -> int:
    from .build import StudyConfig, build_study

    names = [n for n, _ in args.system]
    if len(set(names)) != len(names):
        raise ValueError(f"--system names must be distinct, got {names}")
    cfg = StudyConfig(kind=args.kind, systems=dict(args.system), real=args.real, num=args.num,
                      base_url=args.base_url, votes=args.votes, items_per_hit=args.items_per_hit,
                      seed=args.seed, gold=args.gold, max_hits_per_worker=args.max_hits_per_worker,
                      keep_formats=args.keep_formats)
    res = build_study(cfg, args.out, overwrite=args.overwrite)
    for w in res.warnings:
        print(f"warning: {w}")
    print(f"study written to {res.study_dir}: {res.num_items} clips, {res.num_gold} gold clips, "
          f"{len(res.skipped)} skipped. Keep {res.study_dir / 'private'} private.")
    return 0


def _analyze(args) -> int:
    from .analyze import analyze_results
    from .qc import QCConfig

    qc = QCConfig(gold_tolerance=args.gold_tolerance, max_hits_per_worker=args.max_hits_per_worker)
    res = analyze_results(args.results, args.key, args.out, qc, args.confidence)
    print(Path(res.paths["report"]).read_text(encoding="utf-8"))
    for msg in res.problems[:20]:
        print(f"problem: {msg}")
    if len(res.problems) > 20:
        print(f"... {len(res.problems) - 20} more in {res.paths['problems']}")
    print(f"outputs in {res.out_dir}")
    return 0


def _publish(args) -> int:
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

    from .analyze import load_key
    from .publish import (NO_CREDENTIALS_HELP, HitSettings, check_locales, check_reward, check_tasks, make_client,
                          publish_study)

    settings = HitSettings(reward=check_reward(args.reward), locales=check_locales(args.locale))
    check_tasks(args.task, load_key(args.study))      # before any request: a typo must not half-publish
    try:
        publish_study(args.study, make_client(sandbox=not args.live), settings, sandbox=not args.live,
                      tasks=args.task)
    except (NoCredentialsError, EndpointConnectionError) as e:
        print(NO_CREDENTIALS_HELP.format(error=e), file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as e:
        print(f"error: MTurk refused the request: {e} (progress so far is saved in private/published_*.json; "
              "rerun to resume)", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"build": _build, "analyze": _analyze, "publish": _publish}[args.command](args)
    except (ValueError, FileNotFoundError) as e:
        return fail(e)                                   # one line, whatever the message holds


if __name__ == "__main__":
    sys.exit(main())
