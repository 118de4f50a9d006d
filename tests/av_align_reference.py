"""The AV-Align reference clips (tests/data/av_align, made by its make_reference.py with the published
script) and how that script reads them; used by tests/test_eval_av_align.py and benchmarks/compare_av_align.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REF_DIR = Path(__file__).parent / "data" / "av_align"
REFERENCE = json.loads((REF_DIR / "reference.json").read_text())
CLIPS = {c["name"]: c for c in REFERENCE["clips"]}


def read_as_published(name):
    """The frames and samples the published script reads: cv2.VideoCapture's BGR frames and fps, the
    wav's 16-bit samples as float32 (librosa.load reads them with soundfile); frames returned as RGB."""
    import cv2
    import soundfile as sf

    cap = cv2.VideoCapture(str(REF_DIR / "clips" / f"{name}.mp4"))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    bgr = np.stack(frames)                                              # (F, H, W, 3)
    audio, rate = sf.read(str(REF_DIR / "clips" / f"{name}.wav"), dtype="float32")
    return bgr, bgr[..., ::-1], fps, audio, rate
