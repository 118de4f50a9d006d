"""mmdiff studio launcher.

The Gradio studio is built in its own issue; until it lands this launcher checks that the core
imports and says what is available, so `python app.py` runs on a fresh machine.
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="mmdiff studio (placeholder until the studio issue lands)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    args = parser.parse_args(argv)
    import mmdiff

    print("mmdiff studio: the browser studio is not built yet (see the studio issue).")
    print(f"Core is installed; presets available: {', '.join(sorted(mmdiff.PRESETS))}.")
    print(f"(would serve on http://{args.host}:{args.port})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
