"""Studio latency: cold start to a served page, and click-Generate to a playable clip (Playwright + chromium).

    python -m benchmarks.bench_studio                       # the shipped default model
    python -m benchmarks.bench_studio --ckpt runs/tiny/last.pt --repeat 5
    python -m benchmarks.bench_studio --prompt "a red ball"  # a prompted click (classifier-free guidance)

Starts `python app.py` in a fresh process, measures (1) the time until the page answers HTTP 200 and
until chromium shows the Generate button, (2) for the tab's default settings (DPM-Solver++, 20 steps,
batch 1) the time from the click to the first clip's <video> reaching readyState >= 3 (can play),
and (3) in-process, the sampler alone (the same DPM-Solver++ 20) and writing the clip (mp4 + wav, the display
copy, the spectrogram figure).
Timings depend only on the architecture, so a random-weight tiny checkpoint times like the trained one.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks._util import machine

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 120.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


def breakdown(ckpt: str | None, repeat: int, prompt: str = "") -> dict[str, float]:
    """Median seconds of each stage of one Generate click, in this process; with a prompt also the sampler with
    the two guided forwards in turn (`fastpath.use_parallel(False)`) for comparison."""
    from mmdiff.defaults import AUDIO_GUIDANCE_SCALE, GUIDANCE_SCALE
    from mmdiff.jobs import JobSpec, ModelStore, run_generation, write_clips
    from mmdiff.nn import fastpath

    store = ModelStore("cpu")
    store.get(ckpt)
    spec = JobSpec(num=1, seed=0, prompt=prompt, guidance_scale=GUIDANCE_SCALE, audio_guidance_scale=AUDIO_GUIDANCE_SCALE)
    sampling = "sampling (DPM-Solver++ 20 steps" + (", guided: two forwards per step)" if prompt else ")")
    in_turn = "sampling with the guided forwards in turn"
    stages: dict[str, list[float]] = {sampling: [], "mp4 + wav + spectrogram figure": []}
    if prompt:
        stages[in_turn] = []
    with tempfile.TemporaryDirectory() as d:
        run_generation(store, ckpt, spec)                           # warm-up
        for k in range(repeat):
            t0 = time.perf_counter()
            cfg, v, a = run_generation(store, ckpt, spec)
            t1 = time.perf_counter()
            write_clips(Path(d) / str(k), cfg, v, a)
            t2 = time.perf_counter()
            stages[sampling].append(t1 - t0)
            stages["mp4 + wav + spectrogram figure"].append(t2 - t1)
            if prompt:
                with fastpath.use_parallel(False):
                    t3 = time.perf_counter()
                    run_generation(store, ckpt, spec)
                    stages[in_turn].append(time.perf_counter() - t3)
    return {k: statistics.median(v) for k, v in stages.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_studio", description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped tiny model)")
    p.add_argument("--repeat", type=int, default=3, help="Generate clicks to time (default: 3)")
    p.add_argument("--threads", type=int, default=0, help="passed to app.py --threads (0: torch's default)")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="chromium executable")
    p.add_argument("--prompt", default="", help="type this caption into the prompt box first (guidance at the tab's "
                                                 "defaults; needs a text-conditioned model, e.g. the shipped one)")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    root = Path(__file__).resolve().parent.parent
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    cmd = [sys.executable, str(root / "app.py"), "--port", str(port), "--device", "cpu"]
    if args.ckpt:
        cmd += ["--ckpt", args.ckpt]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
        import torch

        torch.set_num_threads(args.threads)
    print(machine(), f"; load average {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        http = wait_http(url)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(url, wait_until="domcontentloaded")
            button = page.get_by_role("button", name="Generate", exact=True)
            button.wait_for(state="visible", timeout=60_000)
            ready = time.perf_counter() - t0
            print(f"cold start: HTTP 200 after {http:.2f} s, Generate button visible in chromium after {ready:.2f} s")
            if args.prompt:
                page.locator("#gen-prompt textarea, #gen-prompt input").first.fill(args.prompt)
            times = []
            for k in range(args.repeat + 1):                          # the first click also loads the model
                page.locator("#gen-seed input").fill(str(k))            # a new clip (same seed -> same file URL)
                prev = page.evaluate("document.querySelector('#gen-video-0 video')?.src || ''")
                c0 = time.perf_counter()
                button.click()
                page.wait_for_function(
                    "(prev) => { const v = document.querySelector('#gen-video-0 video'); "
                    "return v && v.src && v.src !== prev && v.readyState >= 3 && Math.abs(v.duration - 1.6) < 0.1; }",
                    arg=prev, timeout=120_000)
                times.append(time.perf_counter() - c0)
                page.wait_for_timeout(300)
            browser.close()
        print(f"click Generate -> playable 1.6-s clip: first click (loads the model) {times[0]:.2f} s; "
              f"then median {statistics.median(times[1:]):.2f} s, min {min(times[1:]):.2f} s over {args.repeat}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    for stage, sec in breakdown(args.ckpt, args.repeat, args.prompt).items():
        print(f"  {stage}: {sec:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
