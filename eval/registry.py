"""The one table of metrics and the one table of per-clip features they are computed from.

A metric is one `Metric` entry: its name (the `--metric` value), the feature it needs, the function from
(real features, fake features) to its values, and how a table shows it. A feature is one `Feature` entry:
whether it needs audio, which weight file (extractor) it comes from, and how to build it. Adding a metric
on an existing feature touches only METRICS.

    METRICS["fvd"].feature == "i3d";  METRICS["fad"].scale == 1e4
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from eval import metrics as M

if TYPE_CHECKING:
    from eval.bank import FeatureFn
    from eval.config import ProtocolConfig


# ------------------------------------------------------------------------------ features


@dataclass(frozen=True)
class Feature:
    """A per-clip feature. `extractor`: the eval.features name whose weight file it needs (None: no weights)."""

    name: str
    needs_audio: bool
    extractor: str | None
    build: Callable[["ProtocolConfig"], "FeatureFn"]


def _extractor_feature(name: str, checkpoint: Callable[["ProtocolConfig"], str | None],
                       options: Callable[["ProtocolConfig"], dict[str, Any]] = lambda cfg: {},
                       identity: Callable[["ProtocolConfig"], dict[str, Any]] = lambda cfg: {}
                       ) -> Callable[["ProtocolConfig"], "FeatureFn"]:
    """A feature from eval.features' extractor `name`: its weight file, its load options and what the config adds
    to its cache key, each a function of the config."""
    def build(cfg: "ProtocolConfig") -> "FeatureFn":
        from eval.bank import FeatureFn, bind_extractor
        from eval.config import ProtocolError
        from eval.features import load_extractor

        opts = options(cfg)
        try:
            ex = load_extractor(name, checkpoint=checkpoint(cfg), device=cfg.device, weights_dir=cfg.weights_dir,
                                **opts)
        except TypeError as e:             # an option this extractor does not offer (e.g. batchnorm="train")
            raise ProtocolError(f"the {name} extractor does not take the options {opts} "
                                f"(--protocol {cfg.protocol}): {e}") from e
        return FeatureFn(name, ex.feature_dim, bind_extractor(ex), {**ex.identity(), **identity(cfg)},
                         per_clip=getattr(ex, "batch_independent", True))

    return build


def _audioclip_options(cfg: "ProtocolConfig") -> dict[str, Any]:
    # the extractor's default BatchNorm mode is eval; the option is passed only when it differs
    return {"input_range": cfg.audioclip_input,
            **({"batchnorm": cfg.audioclip_batchnorm} if cfg.audioclip_batchnorm != "eval" else {})}


def _audioclip_identity(cfg: "ProtocolConfig") -> dict[str, Any]:
    # training-mode BatchNorm makes a clip's features depend on its batch: the mode and the batching are in the
    # key (eval mode adds nothing, so features cached before the option existed stay valid)
    return {"batchnorm": "train", "batch_size": cfg.batch_size} if cfg.audioclip_batchnorm == "train" else {}


def _align_feature(name: str, function: str, version: int) -> Callable:
    """A per-clip alignment score (eval.av_align.`function`) as a 1-d feature; its identity names the function."""
    def build(cfg: "ProtocolConfig") -> "FeatureFn":
        import eval.av_align as A
        from eval.bank import FeatureFn

        fn = getattr(A, function)
        scores = lambda clips: np.array([[fn(c.video, c.audio, c.fps, c.audio_rate)] for c in clips])  # noqa: E731
        return FeatureFn(name, 1, scores, {"extractor": name, "function": f"eval.av_align.{function}",
                                             "version": version})

    return build


FEATURES: dict[str, Feature] = {f.name: f for f in (
    Feature("i3d", False, "i3d", _extractor_feature(
        "i3d", lambda cfg: cfg.i3d_checkpoint,
        lambda cfg: {"weights_format": cfg.i3d_format, "resize": cfg.i3d_resize})),
    Feature("audioclip", True, "audioclip", _extractor_feature(
        "audioclip", lambda cfg: cfg.audioclip_checkpoint, _audioclip_options, _audioclip_identity)),
    Feature("clap", True, "clap", _extractor_feature("clap", lambda cfg: cfg.clap_checkpoint)),
    # version 2: `av-align` is the published metric (version 1 cached the flow variant of the change-peak code)
    Feature("av-align", True, None, _align_feature("av-align", "av_align", 2)),
    Feature("av-align-peaks", True, None, _align_feature("av-align-peaks", "change_peak_align", 1)),
)}


# ------------------------------------------------------------------------------ metrics


@dataclass
class RunContext:
    """What a metric may use besides the two feature arrays: the config, the run and cached real statistics."""

    cfg: "ProtocolConfig"
    run: int
    reference_stats: Callable[[str, np.ndarray], tuple[np.ndarray, np.ndarray]]   # (feature, real) -> (mu, sigma)


MetricFn = Callable[[np.ndarray, np.ndarray, RunContext], dict[str, float | list]]


@dataclass(frozen=True)
class Metric:
    name: str
    feature: str
    compute: MetricFn                      # (real (N, D) float64, fake (N, D) float64, ctx) -> {key: value}
    title: str                             # column title in tables
    fmt: str = "{:.2f}"
    higher_is_better: bool = False
    scale: float = 1.0                     # reported = scale x raw (FAD: 1e4, as the paper)
    frechet: bool = False                  # a Frechet distance: --fd-infinity needs N >= D + 3
    extras: tuple[str, ...] = field(default_factory=tuple)   # further summary keys shown as a "(real clips)" row


def frechet(name: str, feature: str, scale: float = 1.0) -> MetricFn:
    def compute(x: np.ndarray, y: np.ndarray, ctx: RunContext) -> dict:
        cfg, seed = ctx.cfg, ctx.cfg.seed + ctx.run
        mu, sigma = ctx.reference_stats(feature, x)
        out: dict[str, Any] = {name: M.frechet_distance_from_stats(mu, sigma, *M.gaussian_stats(y)) * scale}
        if scale != 1.0:
            out[f"{name}_raw"] = out[name] / scale
        if cfg.bootstrap:
            iv = M.bootstrap_ci(x, y, M.frechet_distance, num_boot=cfg.bootstrap, seed=seed)
            out[f"{name}_ci95_low"], out[f"{name}_ci95_high"] = iv.low * scale, iv.high * scale
        if cfg.fd_infinity:
            out[f"{name}_infinity"] = M.frechet_distance_infinity(x, y, seed=seed).value * scale
        if cfg.per_sample:
            out[f"{name}_per_sample"] = (M.per_sample_frechet(list(y), mu, sigma) * scale).tolist()
        return out

    return compute


def kernel(name: str) -> MetricFn:
    return lambda x, y, ctx: {name: M.kernel_distance(x, y, subsets=ctx.cfg.kvd_subsets, seed=ctx.cfg.seed + ctx.run)}


def kernel_audio(name: str) -> MetricFn:
    """KAD (arXiv 2502.15602): eval.metrics.kernel_audio_distance(real, fake), imported when first computed."""
    def compute(x: np.ndarray, y: np.ndarray, ctx: RunContext) -> dict:
        from eval.metrics import kernel_audio_distance

        return {name: kernel_audio_distance(x, y)}

    return compute


def mean_score(name: str) -> MetricFn:
    """A per-clip score: the fake clips' mean, and the real clips' mean beside it for reference."""
    return lambda x, y, ctx: {name: float(y.mean()), f"{name}_real": float(x.mean())}


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("fvd", "i3d", frechet("fvd", "i3d"), "FVD", frechet=True),
    Metric("kvd", "i3d", kernel("kvd"), "KVD"),
    Metric("fad", "audioclip", frechet("fad", "audioclip", M.FAD_SCALE), "FAD", scale=M.FAD_SCALE, frechet=True),
    Metric("fad-clap", "clap", frechet("fad-clap", "clap"), "FAD-CLAP", "{:.4f}", frechet=True),
    Metric("kad", "audioclip", kernel_audio("kad"), "KAD", "{:.4f}"),
    Metric("kad-clap", "clap", kernel_audio("kad-clap"), "KAD-CLAP", "{:.4f}"),
    Metric("av-align", "av-align", mean_score("av-align"), "AV-Align", "{:.3f}", higher_is_better=True,
           extras=("av-align_real",)),
    Metric("av-align-peaks", "av-align-peaks", mean_score("av-align-peaks"), "AV-Align-peaks", "{:.3f}",
           higher_is_better=True, extras=("av-align-peaks_real",)),
)}


def weighted_metrics() -> set[str]:
    """Metrics whose feature needs a published weight file."""
    return {m.name for m in METRICS.values() if FEATURES[m.feature].extractor is not None}


__all__ = ["FEATURES", "METRICS", "Feature", "Metric", "RunContext", "weighted_metrics"]
