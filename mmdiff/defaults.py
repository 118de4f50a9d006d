"""Where the shipped models live. Torch-free, so that command-line parsers can name them without importing torch."""
from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_CHECKPOINT = ASSETS / "tiny-synthetic.pt"              # the joint audio-video model (tiny preset)
DEFAULT_SR_CHECKPOINT = ASSETS / "sr-tiny-synthetic.pt"        # the super-resolution stage (tiny SR preset)
