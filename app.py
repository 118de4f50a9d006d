"""mmdiff studio: the browser app for generation, zero-shot conditioning, spectrograms, evaluation and studies.

    python app.py                         # http://127.0.0.1:7860, the shipped default model
    python app.py --ckpt runs/tiny/last.pt --device cuda --port 8000
    python app.py --workspace /data --workspace runs   # folders the UI may read (real data, runs, clips)

Flags only: the UI is built by studio.build_app; models and jobs live in mmdiff/ and eval/.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mmdiff.cliargs import fail, int_at_least, non_negative_int, positive_float, positive_int

OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python app.py", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int_at_least(0, 65535), default=7860, help="port to serve on (default: 7860)")
    p.add_argument("--ckpt", default=None, help="checkpoint selected at start (default: the shipped tiny model)")
    p.add_argument("--sr-ckpt", default=None,
                   help="super-resolution checkpoint behind the Upscale option (default: the shipped tiny SR model)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link (off by default)")
    p.add_argument("--workspace", action="append", default=None,
                   help="folder the UI may read data, runs and checkpoints from; repeatable (default: the current folder)")
    p.add_argument("--max-upload-mb", type=positive_float, default=200.0, help="largest upload in MB (default: 200)")
    p.add_argument("--max-upload-seconds", type=positive_float, default=60.0, help="longest uploaded clip in s (default: 60)")
    p.add_argument("--max-batch", type=int_at_least(1, 64), default=4, help="largest batch a user may generate (default: 4)")
    p.add_argument("--concurrency", type=positive_int, default=2, help="jobs running at once (default: 2)")
    p.add_argument("--queue-size", type=positive_int, default=32, help="waiting jobs before new ones are refused (default: 32)")
    p.add_argument("--threads", type=non_negative_int, default=0,
                   help="CPU threads for torch (default 0: torch's choice; on a CPU shared with other jobs 1, or "
                        "OMP_WAIT_POLICY=PASSIVE in the environment, is faster: BENCHMARKS.md)")
    p.add_argument("--eval-cache-dir", default="~/.cache/mmdiff/eval",
                   help="feature cache of the Evaluate tab (default: ~/.cache/mmdiff/eval, shared with eval.run)")
    return p.parse_args(argv)


def check_files(args: argparse.Namespace) -> None:
    """A --ckpt / --sr-ckpt / --workspace that is not there fails at start, not at the first click."""
    for flag, path in (("--ckpt", args.ckpt), ("--sr-ckpt", args.sr_ckpt)):
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"{flag} {path}: no such file")
    for folder in args.workspace or []:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"--workspace {folder}: no such folder")
    cache = Path(args.eval_cache_dir).expanduser()
    if cache.exists() and not cache.is_dir():
        raise FileNotFoundError(f"--eval-cache-dir {args.eval_cache_dir}: not a folder")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_files(args)
    except FileNotFoundError as e:
        return fail(e)
    for k, v in OFFLINE_ENV.items():          # before gradio is imported: no calls home at launch
        os.environ.setdefault(k, v)
    from studio.lifecycle import exit_on_signals, make_work_root

    work_root = make_work_root()              # before gradio is imported: its upload cache goes in here
    exit_on_signals()                         # SIGTERM/SIGHUP end the app like Ctrl-C, removing work_root
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    from mmdiff.modelcard import read_card
    from mmdiff.uploads import UploadLimits
    from studio import build_app
    from studio.app import launch_kwargs

    limits = UploadLimits(max_bytes=int(args.max_upload_mb * 2**20), max_seconds=args.max_upload_seconds)
    try:
        if args.ckpt:
            read_card(Path(args.ckpt))        # a file that is not a checkpoint fails now (weights are loaded later)
        demo = build_app(ckpt=args.ckpt, device=args.device, workspace=args.workspace or ["."], limits=limits,
                         max_batch=args.max_batch, concurrency=args.concurrency, queue_size=args.queue_size,
                         eval_cache_dir=args.eval_cache_dir, sr_ckpt=args.sr_ckpt, work_root=str(work_root))
    except ValueError as e:                   # a bad --device, a --ckpt that is not a checkpoint
        return fail(e)
    try:
        demo.launch(**launch_kwargs(demo, args.host, args.port, args.share))
    finally:
        demo.studio.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
