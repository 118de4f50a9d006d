"""The evaluation protocol of MM-Diffusion (Sec. 4.2): N = 2,048 samples, metrics at 64x64, 6 runs: the run loop.

Data flows one way: clip source (eval.sources) -> per-clip features, cached and resumable (eval.bank) ->
per-run statistics -> distances (eval.registry's metrics) -> a result with its protocol card (eval.report).
Configuration and the named protocols are eval.config; input checks eval.checks.

Runs: run r compares N real clips drawn with a generator seeded by (seed, r) against N fake
clips: a seeded draw from a clip folder, or N freshly generated samples (run r takes samples
[r*N, (r+1)*N) of the seeded generation stream).

Cancellation: `evaluate(..., should_stop=fn)` asks `fn()` between batches (real features, each
generated chunk, fake features, each run's metrics) and raises `EvalCancelled` when it returns
True. Every finished batch is already on disk, so the same call made again resumes after it.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from eval.bank import (FeatureBank, FeatureFn, atomic_savez, compute_features, dist_context,  # noqa: F401
                       make_feature_fns, reference_stats, run_key, stable_hash)
from eval.checks import (check_audio_rates, check_fd_infinity, check_frame_rates, check_pool_sizes,  # noqa: F401
                         probe)
from eval.config import (PROTOCOLS, EvalCancelled, ProtocolConfig, ProtocolError, StopFn, check_stop,  # noqa: F401
                         protocol_config)
from eval.registry import FEATURES, METRICS, RunContext
from eval.report import format_table, protocol_card, summarise, versions, write_outputs  # noqa: F401
from eval.sources import DECODE_VERSION, FolderSource, GeneratedSource, load_generate_clips, run_indices  # noqa: F401


def evaluate(cfg: ProtocolConfig, real, fake, feature_fns: list[FeatureFn] | None = None,
             should_stop: StopFn | None = None) -> dict | None:
    """Run the protocol; returns the results dict on rank 0 (None on other ranks).

    `should_stop` (e.g. `threading.Event().is_set`) is asked between batches; when it returns True
    the run raises EvalCancelled, leaving the feature bank and statistics cache consistent so the
    same call resumes later.
    """
    n = cfg.num_samples
    check_pool_sizes(n, real, fake)
    real_clip, fake_clip = probe(real), probe(fake)
    if real_clip is not None and not cfg.allow_fps_mismatch:
        for src in (real, fake):
            src.expected_fps = real_clip.fps        # every clip of both sets is checked when it is read
        if fake_clip is not None:
            check_frame_rates(real_clip.fps, fake_clip.fps, f"{fake.describe()}/{fake.files[0].name}")
    if cfg.needs_audio:
        real_rate, fake_rate = (c.audio_rate if c is not None else None for c in (real_clip, fake_clip))
        check_audio_rates({0: real_rate}, {0: fake_rate}, cfg.allow_rate_mismatch)
        if isinstance(fake, GeneratedSource) and not cfg.allow_rate_mismatch:
            fake.expected_rate = real_rate          # checked on the first generated batch
    fns = feature_fns if feature_fns is not None else make_feature_fns(cfg)
    check_stop(should_stop, "before feature extraction")
    cache = Path(cfg.cache_dir).expanduser()
    fn_ids = {f.name: f.identity for f in fns}
    check_fd_infinity(cfg, {f.name: f.dim for f in fns})
    real_idx = [run_indices(real.pool_size, n, cfg.seed, r, 0) for r in range(cfg.runs)]
    if isinstance(fake, GeneratedSource):
        fake_idx = [np.arange(r * n, (r + 1) * n) for r in range(cfg.runs)]
    else:
        fake_idx = [run_indices(fake.pool_size, n, cfg.seed, r, 1) for r in range(cfg.runs)]
    sides = [(role, src, idx, np.unique(np.concatenate(idx)))     # every clip a side's runs read, once
             for role, src, idx in (("real", real, real_idx), ("fake", fake, fake_idx))]
    for _, src, _, union in sides:
        if hasattr(src, "preflight"):                   # a folder: every unusable file named at once
            src.preflight(union)
    feats, keys, real_runs = {}, {}, []
    for role, src, idx, union in sides:
        banks = {f.name: FeatureBank.of(cache, src, f) for f in fns}
        got = compute_features(src, union, fns, banks, cfg.batch_size, f"{role} features", should_stop)
        pos = {int(i): k for k, i in enumerate(union)}
        feats[role] = [{name: arr[[pos[int(i)] for i in ix]] for name, arr in got.items()} for ix in idx]
        keys[role] = {name: b.dir.name for name, b in banks.items()}
        if role == "real":                  # what each run's reference statistics are cached under
            real_runs = [{name: run_key(b, src, ix) for name, b in banks.items()} for ix in idx]
    rank, _ = dist_context()
    if rank != 0:
        return None
    runs = []
    for r in range(cfg.runs):
        check_stop(should_stop, f"before the metrics of run {r + 1} of {cfg.runs}")
        runs.append(run_metrics(cfg, feats["real"][r], feats["fake"][r], cache, real_runs[r], r))
    return {"config": asdict(cfg), "real": real.describe(), "fake": fake.describe(),
            "real_source": real.identity, "fake_source": fake.identity, "extractors": fn_ids,
            "feature_banks": keys, "runs": runs, "summary": summarise(runs),
            "card": protocol_card(cfg, real, fake, fn_ids, real_clip, fake_clip), "versions": versions()}


def run_metrics(cfg: ProtocolConfig, real: dict, fake: dict, cache: Path, keys: dict[str, str], run: int) -> dict:
    """Every metric of `cfg` on one run's features ({feature: (N, D)} per side); `keys`: {feature: what the real
    statistics of this run are cached under} (`eval.bank.run_key`)."""
    def stats(feature: str, x: np.ndarray):
        return reference_stats(cache, keys[feature], cfg.num_samples, cfg.seed, run, feature, x)

    ctx = RunContext(cfg, run, stats)
    out: dict = {"run": run, "seed": cfg.seed, "num_samples": cfg.num_samples}
    for name in cfg.metrics:
        m = METRICS[name]
        out.update(m.compute(real[m.feature].astype(np.float64), fake[m.feature].astype(np.float64), ctx))
    return out


__all__ = ["DECODE_VERSION", "EvalCancelled", "FEATURES", "FeatureBank", "FeatureFn", "FolderSource",
           "GeneratedSource", "METRICS", "PROTOCOLS", "ProtocolConfig", "ProtocolError", "StopFn", "evaluate",
           "format_table", "protocol_config", "run_indices", "run_metrics", "write_outputs"]
