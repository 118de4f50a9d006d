"""A procedural audio-video dataset whose sounds are caused by what is seen.

Each clip shows one object of one of four classes on a gradient background above a grey floor:
a red or a blue ball that bounces on the floor and clicks at each impact (a damped sine at the
class pitch plus a short noise burst), or a yellow or a green square that flashes and beeps at
each flash (a tone at the class pitch). A clip has 1-4 events at random, continuous times at
least MIN_GAP_S apart, so timing cannot be memorised. Ground-truth event times and a caption go
to a sidecar (events.jsonl, one JSON object per clip).

    python -m mmdiff.data.synthetic --out DIR --num 500 --seed 0 [--preset tiny] [--cache]

Without --cache clips are written as mp4 (+ wav) through av_io.write_clip, to be consumed by
mmdiff.data.prepare like real data; with --cache DIR becomes a training-ready cache directly.
Frames integrate the scene over their whole exposure [k/fps, (k+1)/fps) (motion blur), the same
interval that audio samples [k*spf, (k+1)*spf) cover.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from tqdm import tqdm

from mmdiff.atomic import write_text
from mmdiff.data import av_io
from mmdiff.data.cache import CacheIndex, CacheItem, CacheSpec, save_index, write_item
from mmdiff.outdir import OutputDirError, claim, named

MIN_GAP_S = 0.25          # shortest time between two events
EDGE_S = (0.1, 0.15)      # no event in the first / last this many seconds
EXPOSURE_STEPS = 4        # sub-frame samples averaged per frame (motion blur)
FLOOR_FRAC = 0.125        # floor height as a fraction of the frame
FLASH_TAU_S = 0.1         # flash brightness decay
NOISE_FLOOR = 0.002       # std of the background hiss


@dataclass(frozen=True)
class EventClass:
    name: str
    kind: str                      # "ball" | "flash"
    rgb: tuple[int, int, int]
    pitch: float                   # Hz
    colour: str
    pitch_word: str


CLASSES = (
    EventClass("red_ball", "ball", (230, 40, 40), 1200.0, "red", "high"),
    EventClass("blue_ball", "ball", (50, 90, 240), 500.0, "blue", "low"),
    EventClass("yellow_flash", "flash", (250, 225, 40), 880.0, "yellow", "high"),
    EventClass("green_flash", "flash", (40, 210, 80), 330.0, "green", "low"),
)


@dataclass(frozen=True)
class ClipSpec:
    """Everything random about one clip, drawn by sample_clip_spec."""

    cls: int                       # index into CLASSES
    events: tuple[float, ...]      # event times in s, increasing
    bg_top: tuple[float, float, float]
    bg_bottom: tuple[float, float, float]
    radius: float                  # ball radius / square half-side, fraction of frame width
    x0: float                      # ball: start x; flash: square centre x (fractions of the width)
    y0: float                      # flash: square centre y (fraction of the height)
    vx: float                      # ball: horizontal speed (frame widths / s)
    lead: float                    # ball: time from the virtual bounce before the first event (at least)
    tail: float                    # ball: time to the virtual bounce after the last event (at least)
    gain: float
    duration: float                # clip length in s


# ---------------------------------------------------------------------------------------------
def sample_event_times(rng: np.random.Generator, n: int, duration: float,
                       min_gap: float = MIN_GAP_S) -> np.ndarray:
    """n sorted times in [EDGE_S[0], duration - EDGE_S[1]] at least min_gap apart, uniformly."""
    lo, hi = EDGE_S[0], duration - EDGE_S[1]
    slack = (hi - lo) - (n - 1) * min_gap
    if slack < 0:
        raise ValueError(f"{n} events {min_gap} s apart do not fit in a {duration} s clip")
    return lo + np.sort(rng.uniform(0.0, slack, n)) + np.arange(n) * min_gap


def sample_clip_spec(rng: np.random.Generator, duration: float) -> ClipSpec:
    max_events = min(4, int((duration - sum(EDGE_S)) // MIN_GAP_S) + 1)
    n = int(rng.integers(1, max_events + 1))
    dark = lambda: tuple(float(x) for x in rng.uniform(15, 110, 3))   # noqa: E731  muted colours
    return ClipSpec(
        cls=int(rng.integers(len(CLASSES))),
        events=tuple(float(t) for t in sample_event_times(rng, n, duration)),
        bg_top=dark(), bg_bottom=dark(), radius=float(rng.uniform(0.08, 0.12)),
        x0=float(rng.uniform(0.25, 0.75)), y0=float(rng.uniform(0.3, 0.6)),
        vx=float(rng.uniform(-0.4, 0.4)),
        lead=float(rng.uniform(0.3, 0.6)), tail=float(rng.uniform(0.3, 0.6)),
        gain=float(rng.uniform(0.5, 0.9)), duration=float(duration))


def caption(spec: ClipSpec) -> str:
    c = CLASSES[spec.cls]
    times = {1: "once", 2: "twice"}.get(len(spec.events), f"{_word(len(spec.events))} times")
    if c.kind == "ball":
        return f"a {c.colour} ball bounces {times}; each bounce makes a {c.pitch_word} click"
    return f"a {c.colour} square flashes {times}, with a {c.pitch_word} beep at each flash"


def example_captions(seed: int = 0, duration: float = 1.6, search: int = 200) -> list[str]:
    """The caption of the first clip of each class in the dataset made with `seed` (make_clip's draws), in
    class order: prompts worded as a text model trained on these clips knows them."""
    found: dict[int, str] = {}
    for index in range(search):
        spec = sample_clip_spec(np.random.default_rng([seed, index]), duration)
        found.setdefault(spec.cls, caption(spec))
        if len(found) == len(CLASSES):
            break
    return [found[k] for k in sorted(found)]


def _word(n: int) -> str:
    return {3: "three", 4: "four"}.get(n, str(n))


# ---------------------------------------------------------------------------------------------
# video
def exposure_times(frames: int, fps: float) -> np.ndarray:
    """(F, S) sub-frame sample times inside each frame's exposure [k/fps, (k+1)/fps)."""
    return (np.arange(frames)[:, None] + (np.arange(EXPOSURE_STEPS)[None] + 0.5) / EXPOSURE_STEPS) / fps


def ball_height(t: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """Height above the floor in [0, 1] at times t: parabolic arcs touching 0 at every event.

    The virtual bounces before the first and after the last event are placed so that their arcs
    peak outside [0, duration]: the ball enters falling and leaves rising, with no silent bounce.
    """
    first, last = spec.events[0], spec.events[-1]
    before = min(first - spec.lead, -first)                      # apex at or before t = 0
    after = max(last + spec.tail, 2 * spec.duration - last)      # apex at or after the clip end
    bounces = np.array([before, *spec.events, after])
    seg = np.clip(np.searchsorted(bounces, t, side="right") - 1, 0, len(bounces) - 2)
    ta, tb = bounces[seg], bounces[seg + 1]
    peak = np.minimum(0.75, 0.2 + 1.0 * (tb - ta))
    return np.clip(peak * 4.0 * (t - ta) * (tb - t) / (tb - ta) ** 2, 0.0, 1.0)


def _background(spec: ClipSpec, h: int, w: int) -> np.ndarray:
    """(H, W, 3) float gradient with a grey floor."""
    a = np.linspace(0.0, 1.0, h)[:, None]
    bg = (1 - a) * np.array(spec.bg_top) + a * np.array(spec.bg_bottom)      # (H, 3)
    bg = np.repeat(bg[:, None], w, axis=1)
    bg[h - floor_rows(h):] = 150.0
    return bg


def floor_rows(h: int) -> int:
    return max(2, round(FLOOR_FRAC * h))


def _ball_alpha(spec: ClipSpec, t: np.ndarray, h: int, w: int) -> np.ndarray:
    """(F, H, W) coverage of the ball, averaged over each frame's exposure. t: (F, S)."""
    r = spec.radius * w
    floor_y = h - floor_rows(h)
    cy = floor_y - r - ball_height(t, spec) * (floor_y - 2 * r)               # (F, S) pixel rows
    phase = np.mod(spec.x0 + spec.vx * t - spec.radius, 2 * (1 - 2 * spec.radius))
    cx = (spec.radius + np.minimum(phase, 2 * (1 - 2 * spec.radius) - phase)) * w  # walls reflect
    yy, xx = np.arange(h)[:, None] + 0.5, np.arange(w)[None] + 0.5
    dist = np.sqrt((yy - cy[..., None, None]) ** 2 + (xx - cx[..., None, None]) ** 2)  # (F, S, H, W)
    return np.clip(r + 0.5 - dist, 0.0, 1.0).mean(axis=1)


def flash_level(t: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """Brightness in [0, 1] at times t: jumps to 1 at every event, decays with FLASH_TAU_S."""
    dt = t[..., None] - np.array(spec.events)                                  # (..., E)
    return np.clip(np.where(dt >= 0, np.exp(-np.maximum(dt, 0) / FLASH_TAU_S), 0.0).sum(-1), 0, 1)


def render_video(spec: ClipSpec, frames: int, fps: float, size: int) -> np.ndarray:
    """(F, H, W, 3) uint8 frames of the clip."""
    c = CLASSES[spec.cls]
    t = exposure_times(frames, fps)                                            # (F, S)
    bg = _background(spec, size, size)[None]                                   # (1, H, W, 3)
    colour = np.array(c.rgb, dtype=float)
    if c.kind == "ball":
        alpha = _ball_alpha(spec, t, size, size)[..., None]                    # (F, H, W, 1)
        out = bg * (1 - alpha) + colour * alpha
    else:
        level = flash_level(t, spec).mean(axis=1)[:, None, None, None]         # (F, 1, 1, 1)
        half = spec.radius * size * 1.5
        cy, cx = spec.y0, spec.x0                                              # centre in fractions
        yy, xx = np.arange(size)[:, None] + 0.5, np.arange(size)[None] + 0.5
        inside = ((np.abs(yy - cy * size) <= half) & (np.abs(xx - cx * size) <= half))[None, ..., None]
        lit = 0.25 * colour + 0.75 * colour * level                            # dim when idle
        out = np.where(inside, lit, bg)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# audio
def render_audio(spec: ClipSpec, samples: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """(T,) float32 in [-1, 1]: one click or beep starting at each event time, over faint hiss."""
    c = CLASSES[spec.cls]
    onsets = np.round(np.array(spec.events) * rate) / rate                     # (E,) on the sample grid
    tau = np.arange(samples)[None] / rate - onsets[:, None]                    # (E, T) time since event
    on = tau >= 0
    tau = np.maximum(tau, 0.0)
    tone = np.sin(2 * np.pi * c.pitch * tau)
    if c.kind == "ball":
        burst = rng.standard_normal(tau.shape) * np.exp(-tau / 0.004)
        wave = (tone * np.exp(-tau / 0.025) + 0.5 * burst) * on
    else:
        wave = tone * (1 - np.exp(-tau / 0.002)) * np.exp(-tau / 0.08) * on
    audio = spec.gain * wave.sum(axis=0) + NOISE_FLOOR * rng.standard_normal(samples)
    peak = np.abs(audio).max()
    return (audio * (0.95 / peak if peak > 0.95 else 1.0)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticClip:
    video: np.ndarray            # (F, H, W, 3) uint8
    audio: np.ndarray            # (T,) float32
    spec: ClipSpec
    record: dict[str, Any]       # the sidecar line


def make_clip(index: int, seed: int, frames: int, fps: float, size: int, rate: int) -> SyntheticClip:
    """Clip `index` of the dataset with `seed` (the same arguments always give the same clip)."""
    rng = np.random.default_rng([seed, index])
    duration = frames / fps
    spec = sample_clip_spec(rng, duration)
    video = render_video(spec, frames, fps, size)
    audio = render_audio(spec, round(frames * rate / fps), rate, rng)
    name = f"clip_{index:05d}"
    record = {"clip": name, "index": index, "seed": seed, "class": CLASSES[spec.cls].name,
              "caption": caption(spec), "events": [round(t, 6) for t in spec.events],
              "event_frames": [int(t * fps) for t in spec.events], "frames": frames, "fps": fps,
              "audio_rate": rate, "size": size}
    return SyntheticClip(video, audio, spec, record)


def write_sidecar(path: Path, records: list[dict[str, Any]]) -> None:
    write_text(path, "".join(json.dumps(r) + "\n" for r in records), fsync=True)


# What a run writes into --out (what --overwrite may remove): clips as mp4 (+ wav) or as a cache, and the sidecar.
SYNTHETIC_OUTPUTS = named(r"clip_\d{5,}\.(mp4|wav)", r"events\.jsonl", r"index\.json",
                          r"items/clip_\d{5,}\.(video|audio)\.npy")


def generate(out: str | Path, num: int, seed: int, frames: int, fps: float, size: int, rate: int,
             to_cache: bool = False, wav: bool = False, progress: bool = True,
             overwrite: bool = False) -> list[dict[str, Any]]:
    """Write `num` clips as mp4 (+ wav) or as a cache into `out`, plus events.jsonl; returns the records.

    `out` must be new or empty (`overwrite`: cleared first when it holds an earlier run's outputs) and is
    locked while the clips are written (mmdiff.outdir), so events.jsonl always describes the whole folder.
    """
    with claim(out, "mmdiff.data.synthetic", overwrite, ours=lambda d: (d / "events.jsonl").is_file(),
               outputs=SYNTHETIC_OUTPUTS) as out:
        return _generate(out, num, seed, frames, fps, size, rate, to_cache, wav, progress)


def _generate(out: Path, num: int, seed: int, frames: int, fps: float, size: int, rate: int,
              to_cache: bool, wav: bool, progress: bool) -> list[dict[str, Any]]:
    spec = CacheSpec(fps=fps, video_size=(size, size), audio_rate=rate)
    index = CacheIndex(spec=spec, settings={"synthetic": {"num": num, "seed": seed}})
    records = []
    for i in tqdm(range(num), desc="synthetic", unit="clip", disable=not progress):
        clip = make_clip(i, seed, frames, fps, size, rate)
        name = clip.record["clip"]
        if to_cache:
            item = CacheItem(id=name, frames=frames, source="synthetic", meta=_meta(clip.record))
            index.items.append(write_item(out, spec, item, clip.video, clip.audio))
        else:
            av_io.write_clip(out / f"{name}.mp4", clip.video, clip.audio, fps, rate,
                             wav_path=out / f"{name}.wav" if wav else None)
            clip.record["file"] = f"{name}.mp4"
        records.append(clip.record)
    write_sidecar(out / "events.jsonl", records)
    if to_cache:
        save_index(out, index)
    return records


def _meta(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in ("class", "caption", "events", "event_frames")}


def build_parser() -> argparse.ArgumentParser:
    from mmdiff.data.prepare import add_spec_flags
    p = argparse.ArgumentParser(prog="python -m mmdiff.data.synthetic", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num", type=int, required=True, help="number of clips")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (clip i depends only on seed and i)")
    add_spec_flags(p, default_preset="tiny")
    p.add_argument("--seconds", type=float, default=None,
                   help="clip length in s (default: the preset's frames / fps, 1.6 s)")
    p.add_argument("--cache", action="store_true",
                   help="write a training-ready cache (index.json + .npy) instead of mp4 files")
    p.add_argument("--wav", action="store_true", help="also write a .wav beside each mp4")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the clips of an earlier run in --out (default: refuse a non-empty folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Iterable[str] | None = None) -> int:
    from mmdiff.config import PRESETS
    from mmdiff.data.prepare import spec_from_args
    args = build_parser().parse_args(argv)
    if args.num < 1:
        print("error: --num must be at least 1", file=sys.stderr)
        return 2
    try:
        spec = spec_from_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    seconds = args.seconds if args.seconds is not None else PRESETS[args.preset].duration
    if not math.isfinite(seconds) or not math.isfinite(spec.fps) or not spec.fps > 0:
        print(f"error: --seconds and --fps must be finite numbers > 0, got {seconds:g} and {spec.fps:g}", file=sys.stderr)
        return 2
    if not args.cache:
        try:
            av_io.check_mp4_audio_rate(spec.audio_rate)          # mp4 mode: an AAC track per clip
        except ValueError as e:
            print(f"error: --audio-rate {spec.audio_rate}: {e} (or write a --cache)", file=sys.stderr)
            return 2
    frames = round(seconds * spec.fps)
    if frames < 1 or seconds < sum(EDGE_S) + 0.05:
        print(f"error: --seconds {seconds} is too short for an event (need > {sum(EDGE_S) + 0.05} s)",
              file=sys.stderr)
        return 2
    try:
        records = generate(args.out, args.num, args.seed, frames, spec.fps, spec.video_size[0],
                           spec.audio_rate, to_cache=args.cache, wav=args.wav, progress=not args.quiet,
                           overwrite=args.overwrite)
    except OutputDirError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_events = sum(len(r["events"]) for r in records)
    print(f"wrote {len(records)} clips ({n_events} events) of {frames} frames at {spec.fps:g} fps, "
          f"{spec.video_size[0]}x{spec.video_size[0]}, {spec.audio_rate} Hz to {args.out}"
          f"{' as a cache' if args.cache else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
