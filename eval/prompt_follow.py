"""Does a sample show what its prompt asks for? Issue 20's prompt check, with the synthetic generator's labels.

A caption of `mmdiff.data.synthetic` names a class (colour and shape: red or blue ball, yellow or green
square; the class also fixes the pitch word) and an event count (once, twice, three or four times). This
module reads the same three things back from a clip, with no learned model:

- colour/shape (`video_class`): the object is what changes (a ball moves, a square flashes; backgrounds
  and floor are static), so the pixels whose value ranges over more than `MIN_CHANGE` in time and are
  saturated (max - min channel above `MIN_SATURATION`) in their most saturated frame vote for the class
  colour nearest in direction (RGB cosine, so a dimmed or half-lit square counts as its colour); most votes
  wins. Colour alone is not enough: the muted backgrounds (channels 15-110) can be as saturated as a
  motion-blurred or half-lit object.
- pitch (`audio_class`): the class whose pitch band (+-`PITCH_BAND_HZ`) holds most of the clip's spectral
  energy (scipy's Welch estimate).
- events (`event_count`): peaks of the audio's RMS envelope (10-ms windows) higher than `PEAK_FRACTION`
  of the loudest and `PEAK_FLOOR` absolute, at least 0.2 s apart (the generator keeps events
  `MIN_GAP_S` = 0.25 s apart), counted with `scipy.signal.find_peaks`.

How far to trust it is measured on real clips of a held-out seed: `recognise` on the generator's own clips
must return their labels (tests/test_eval_prompt_follow.py; accuracies in BENCHMARKS.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from eval.cleanliness import window_rms
from mmdiff.data.synthetic import CLASSES

MIN_CHANGE = 30             # a pixel whose value ranges over more than this (0-255) in time is the object's
MIN_SATURATION = 40         # ... when its most saturated frame is at least this saturated (max - min channel)
PITCH_BAND_HZ = 40.0        # half width of each class's pitch band
ENVELOPE_WINDOW_S = 0.01    # RMS envelope window
PEAK_FRACTION = 0.3         # an event peak is at least this fraction of the loudest window ...
PEAK_FLOOR = 0.02           # ... and at least this RMS (the generator's hiss is 0.002)
PEAK_GAP_S = 0.2            # peaks closer than this are one event


@dataclass(frozen=True)
class Recognised:
    """Per-clip labels, each (N,) int: class indices into CLASSES, and event counts."""

    video_class: np.ndarray
    audio_class: np.ndarray
    events: np.ndarray


def video_class(video: np.ndarray) -> np.ndarray:
    """(N, F, H, W, 3) uint8 frames -> (N,) index of the class colour of the clip's changing, saturated pixels."""
    v = video.astype(np.float32)
    saturation = v.max(axis=-1) - v.min(axis=-1)                                    # (N, F, H, W)
    change = (v.max(axis=1) - v.min(axis=1)).max(axis=-1)                           # (N, H, W)
    vivid = np.take_along_axis(v, saturation.argmax(axis=1)[:, None, ..., None], axis=1)[:, 0]   # (N, H, W, 3)
    colours = np.array([c.rgb for c in CLASSES], dtype=np.float32)                  # (K, 3)
    nearest = (vivid @ (colours / np.linalg.norm(colours, axis=1, keepdims=True)).T).argmax(axis=-1)  # (N, H, W)
    votes = (change > MIN_CHANGE) & (saturation.max(axis=1) > MIN_SATURATION)     # vivid's own saturation
    counts = np.stack([(votes & (nearest == k)).sum(axis=(1, 2)) for k in range(len(CLASSES))], axis=-1)
    return counts.argmax(axis=1)                                                     # (N, K) -> (N,)


def audio_class(audio: np.ndarray, rate: int) -> np.ndarray:
    """(N, T) waveforms -> (N,) index of the class whose pitch band holds the most energy."""
    freqs, power = signal.welch(audio.astype(np.float64), fs=rate, nperseg=min(1024, audio.shape[1]), axis=-1)
    bands = np.stack([power[:, np.abs(freqs - c.pitch) <= PITCH_BAND_HZ].sum(axis=1) for c in CLASSES], axis=1)
    return bands.argmax(axis=1)


def event_count(audio: np.ndarray, rate: int) -> np.ndarray:
    """(N, T) waveforms -> (N,) number of audio events (peaks of the ENVELOPE_WINDOW_S RMS envelope)."""
    out = []
    for env in window_rms(audio, rate, ENVELOPE_WINDOW_S):
        env = np.pad(env, 1)                            # a peak in the first or last window still counts
        height = max(PEAK_FLOOR, PEAK_FRACTION * float(env.max()))
        peaks, _ = signal.find_peaks(env, height=height, distance=max(1, round(PEAK_GAP_S / ENVELOPE_WINDOW_S)))
        out.append(len(peaks))
    return np.array(out, dtype=int)


def recognise(video: np.ndarray, audio: np.ndarray, rate: int) -> Recognised:
    """video (N, F, H, W, 3) uint8, audio (N, T) in [-1, 1] -> what the clips show and sound like."""
    return Recognised(video_class(video), audio_class(audio, rate), event_count(audio, rate))


def agreement(found: Recognised, classes: np.ndarray, events: np.ndarray) -> dict:
    """Fractions of clips whose recognised colour/shape, pitch, event count, and all three equal the labels."""
    colour = found.video_class == classes
    pitch = found.audio_class == classes
    count = found.events == events
    return {"colour_shape": float(colour.mean()), "pitch": float(pitch.mean()), "events": float(count.mean()),
            "all": float((colour & pitch & count).mean())}
