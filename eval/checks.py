"""Input checks of a protocol run, made before (or as) clips are read: each failure is a ProtocolError that
says what to change."""
from __future__ import annotations

from eval.config import ProtocolConfig, ProtocolError


def check_audio_rates(real: dict[int, int | None], fake: dict[int, int | None], allow: bool) -> None:
    r, f = {v for v in real.values() if v}, {v for v in fake.values() if v}
    if len(r | f) > 1 and not allow:
        raise ProtocolError(
            f"audio sample rates differ (real clips: {sorted(r)} Hz, fake clips: {sorted(f)} Hz). Each "
            "extractor resamples to its own rate, but audio of a lower rate lacks the high band, which biases "
            "the audio metrics (FAD, and AV-Align's onsets). Resample the clips to one rate, or pass "
            "--allow-rate-mismatch to go on.")


def check_fd_infinity(cfg: ProtocolConfig, dims: dict[str, int]) -> None:
    """--fd-infinity fits FD over subsets of at least D + 1 clips: N must exceed D + 2 (before any work)."""
    from eval.registry import METRICS

    if not cfg.fd_infinity:
        return
    for name in cfg.metrics:
        m = METRICS[name]
        d = dims.get(m.feature) if m.frechet else None
        if d and cfg.num_samples < d + 3:
            raise ProtocolError(f"--fd-infinity for {name} fits FD over subsets of at least D + 1 = {d + 1} clips "
                                f"({m.feature} features are {d}-d), so --num-samples must be >= {d + 3}; "
                                f"it is {cfg.num_samples}")


def check_frame_rates(expected: float, fps: float, what: str) -> None:
    """The same number of frames spans another time at another frame rate: FVD would compare motion of
    different speeds and AV-Align other time spans."""
    if abs(fps - expected) <= 1e-3 * expected:
        return
    raise ProtocolError(
        f"{what} has {fps:g} frames/s but the real clips have {expected:g}: the first --frames frames of each "
        "would cover different time spans. Re-encode the clips at one frame rate (e.g. ffmpeg -i in.mp4 -r "
        f"{expected:g} out.mp4), or pass --allow-fps-mismatch to go on.")


def check_pool_sizes(n: int, real, fake) -> None:
    for role, src in (("real", real), ("fake", fake)):
        if src.pool_size < n:
            raise ProtocolError(
                f"{role} set {src.describe()} has {src.pool_size} clips but --num-samples is {n}; clips are never "
                f"repeated: add clips or pass --num-samples {src.pool_size}")


def probe(source):
    """Read the first clip of a folder source (fails early on short or audio-less clips); None for others."""
    return source.read(0) if hasattr(source, "files") else None


__all__ = ["check_audio_rates", "check_fd_infinity", "check_frame_rates", "check_pool_sizes", "probe"]
