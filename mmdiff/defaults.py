"""Where the shipped models live. Torch-free, so that command-line parsers can name them without importing torch."""
from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_CHECKPOINT = ASSETS / "tiny-synthetic.pt"              # the joint audio-video model (tiny preset)
DEFAULT_SR_CHECKPOINT = ASSETS / "sr-tiny-synthetic.pt"        # the super-resolution stage (tiny SR preset)
# Prompt guidance of the video / the audio stream (CLI and studio defaults): the shipped model follows held-out
# captions' colour/shape and pitch best at video 6, with every sample clean when the audio is only conditioned
# (1); guiding the audio too raises its background between events (README, "The shipped default model")
GUIDANCE_SCALE, AUDIO_GUIDANCE_SCALE = 6.0, 1.0
