"""eval.features.clap against laion-clap's own audio embedding path, same weights, same waveforms.

    HF_HUB_OFFLINE=1 .venv-clap/bin/python -m benchmarks.check_clap --ckpt DIR/630k-audioset-best.pt [--json OUT]

Runs in the CLAP environment (requirements-clap.txt), offline; the checkpoint is a real one or
one from benchmarks/make_clap_test_checkpoint.py. Reference: laion_clap.CLAP_Module(enable_fusion=
False, amodel=<read off the checkpoint>, tmodel='roberta') with `load_ckpt(ckpt)` (laion-clap's own
loader, strict: every key of its full model must be in the file) and
`get_audio_embedding_from_data(x)` (int16 round trip, repeat-pad to 10 s, HTSAT, projection,
L2 normalisation). Ours: `load_extractor('clap', checkpoint=ckpt)(x, sample_rate=48000)`.

Waveforms, all at 48 kHz and at most 10 s (longer ones laion-clap crops at random): uniform noise
(10 s, 3.7 s), a harmonic tone (2.5 s), a clipped sine (10 s, peaks at 1.5), and a real recording,
CPython's test/audiodata/pluck-pcm16.wav (a plucked string, 11,025 Hz stereo, 0.3 s), mixed to
mono and resampled to 48 kHz once by eval.features.audioclip.resample, the same array for both.
With `--fad REAL FAKE RESULTS_JSON` (a `python -m eval.run --metric fad-clap --runs 1` result whose
--num-samples is the size of both folders): the same FAD computed from laion-clap's embeddings of
the clips' audio (read by eval.clips as the protocol reads it, resampled to 48 kHz by
eval.features.audioclip.resample) with eval.metrics.frechet_distance, against the JSON's value.
Besides, informational: laion-clap's file path on that .wav (`get_audio_embedding_from_filelist`,
which resamples with librosa's soxr) against ours given the native 11,025 Hz samples (polyphase
resampling): this measures the resamplers, not the network.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import sysconfig
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np

from mmdiff.atomic import write_text

RATE = 48_000
PLUCK = Path(sysconfig.get_paths()["stdlib"]) / "test" / "audiodata" / "pluck-pcm16.wav"


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16-bit PCM .wav -> (mono float32 in [-1, 1], rate)."""
    import wave

    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2, "16-bit PCM expected"
        rate, ch = w.getframerate(), w.getnchannels()
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, ch).astype(np.float32) / 32768.0
    return x.mean(axis=1), rate


def waveforms() -> dict[str, np.ndarray]:
    from eval.features.audioclip import resample

    rng = np.random.default_rng(0)
    t = lambda s: np.arange(int(s * RATE)) / RATE            # noqa: E731
    tone = sum(0.3 / k * np.sin(2 * np.pi * 440 * k * t(2.5)) for k in (1, 2, 3, 5))
    pluck, rate = read_wav(PLUCK)
    return {
        "noise 10 s": rng.uniform(-0.5, 0.5, 10 * RATE),
        "noise 3.7 s (repeat-pad)": rng.uniform(-0.5, 0.5, int(3.7 * RATE)),
        "tone 440 Hz 2.5 s": tone,
        "clipped sine 10 s": 1.5 * np.sin(2 * np.pi * 1000 * t(10)),
        f"real: {PLUCK.name} -> 48 kHz ({len(pluck) / rate:.2f} s)": resample(pluck[None], rate, RATE)[0],
    }


def fad_check(ref, real: str, fake: str, results_json: str) -> dict:
    """An eval.run fad-clap result (1 run, N = folder size) recomputed from laion-clap's embeddings."""
    import torch

    from eval import metrics as M
    from eval.bank import DIGESTS_FILE, FeatureBank
    from eval.clips import list_clips, read_clip
    from eval.features.audioclip import resample
    from eval.sources import file_digests

    res = json.loads(Path(results_json).read_text())
    cfg = res["config"]
    assert cfg["runs"] == 1, "one run expected"
    feats, cached = {}, {}
    for role, folder in (("real", real), ("fake", fake)):
        files = list_clips(folder)
        assert len(files) == cfg["num_samples"], "--num-samples must be the folder size (all clips, in order)"
        waves = []
        for f in files:
            clip = read_clip(f, cfg["frames"], with_audio=True)
            waves.append(resample(clip.audio[None].astype(np.float32), clip.audio_rate, RATE)[0])
        with torch.no_grad():
            feats[role] = np.asarray(ref.get_audio_embedding_from_data(waves), np.float64)
        bank = FeatureBank.named(Path(cfg["cache_dir"]).expanduser(), res_key(res, role))
        rows = bank.load()
        keys = file_digests(files, bank.root / DIGESTS_FILE) if bank.by_content else range(len(files))
        cached[role] = np.stack([rows[k] for k in keys]) if all(k in rows for k in keys) else None
    ours = res["runs"][0]["fad-clap"]
    theirs = M.frechet_distance(feats["real"], feats["fake"])
    diffs = [float(np.abs(cached[r] - feats[r]).max()) for r in cached if cached[r] is not None]
    return {"eval_run": ours, "laion_clap": theirs, "relative_diff": abs(ours - theirs) / abs(theirs),
            "cached_features_max_abs_diff": max(diffs) if diffs else float("nan")}


def res_key(results: dict, role: str) -> str:
    """The CLAP feature-bank folder of one side of an eval.run result (recorded by eval.protocol.evaluate)."""
    return results["feature_banks"][role]["clap"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--json", default=None, help="write the numbers here")
    p.add_argument("--fad", nargs=3, metavar=("REAL", "FAKE", "RESULTS_JSON"), default=None,
                   help="recompute an eval.run fad-clap result (one run, all clips) through laion-clap")
    args = p.parse_args(argv)
    import torch

    from benchmarks.make_clap_test_checkpoint import laion_clap_module
    from eval.features import load_extractor
    from eval.features.clap import clap_audio_state, clap_model_name

    t0 = time.perf_counter()
    ours = load_extractor("clap", checkpoint=args.ckpt, device="cpu").load()
    amodel = clap_model_name(*clap_audio_state(torch.load(args.ckpt, map_location="cpu", weights_only=True)))
    assert amodel == ours.model_name
    ref = laion_clap_module(amodel, device="cpu")
    ref.load_ckpt(args.ckpt, verbose=False)                 # laion-clap's loader, strict
    print(f"loaded {args.ckpt} ({amodel}) both ways in {time.perf_counter() - t0:.0f} s")

    waves = {k: np.asarray(v, np.float32) for k, v in waveforms().items()}
    with torch.no_grad():
        theirs = ref.get_audio_embedding_from_data([w for w in waves.values()])     # one batch, any lengths
    rows, worst = [], 0.0
    for (name, w), e_ref in zip(waves.items(), theirs):
        e = ours(w[None], sample_rate=RATE)[0]
        d = float(np.abs(e - e_ref).max())
        worst = max(worst, d)
        rows.append({"waveform": name, "samples": len(w), "max_abs_diff": d, "cosine": float(e @ e_ref),
                     "norm_ours": float(np.linalg.norm(e)), "spread_ref": float(e_ref.std())})
    # Batched through ours as well (equal lengths): the 10 s clips in one call.
    ten = [k for k, w in waves.items() if len(w) == 10 * RATE]
    eb = ours(np.stack([waves[k] for k in ten]), sample_rate=RATE)
    batch_diff = float(max(np.abs(eb[i] - theirs[list(waves).index(k)]).max() for i, k in enumerate(ten)))
    # Distinct inputs give distinct embeddings (random weights can collapse; this says they did not).
    sims = theirs @ theirs.T
    off_diag = float(np.max(sims[~np.eye(len(sims), dtype=bool)]))
    closest = float(min(np.abs(theirs[i] - theirs[j]).max() for i in range(len(theirs)) for j in range(i)))

    # Informational: the .wav through laion-clap's file path (librosa soxr resampling) vs ours (polyphase).
    pluck, rate = read_wav(PLUCK)
    with torch.no_grad():
        e_file = ref.get_audio_embedding_from_filelist([str(PLUCK)])[0]
    e_native = ours(pluck[None], sample_rate=rate)[0]
    file_row = {"max_abs_diff": float(np.abs(e_native - e_file).max()), "cosine": float(e_native @ e_file)}

    fad_row = fad_check(ref, *args.fad) if args.fad else None

    out = {"checkpoint": str(args.ckpt), "audio_encoder": amodel, "rows": rows, "max_abs_diff": worst,
           "batched_10s_max_abs_diff": batch_diff, "max_cosine_between_different_inputs": off_diag,
           "min_max_abs_diff_between_different_inputs": closest,
           "file_path_resampler_check": file_row, "fad_check": fad_row,
           "versions": {"torch": torch.__version__, "numpy": np.__version__,
                        "laion_clap": __import__("importlib.metadata").metadata.version("laion-clap"),
                        "transformers": __import__("importlib.metadata").metadata.version("transformers")}}
    w = max(len(r["waveform"]) for r in rows)
    print(f"{'waveform'.ljust(w)} | max |ours - laion-clap| | cosine")
    for r in rows:
        print(f"{r['waveform'].ljust(w)} | {r['max_abs_diff']:.3e}               | {r['cosine']:.9f}")
    print(f"max over waveforms: {worst:.3e}; the {len(ten)} clips of 10 s in one batch through ours: {batch_diff:.3e}")
    print(f"embeddings of different inputs (laion-clap): largest cosine {off_diag:.4f}, smallest max abs "
          f"difference {closest:.3e}")
    print(f"{PLUCK.name} via laion-clap's file path (librosa/soxr to 48 kHz) vs ours from 11,025 Hz "
          f"(polyphase): max diff {file_row['max_abs_diff']:.3e}, cosine {file_row['cosine']:.6f} (resamplers differ)")
    if fad_row:
        print(f"FAD-CLAP {args.fad[0]} vs {args.fad[1]}: eval.run {fad_row['eval_run']:.9g}, through laion-clap "
              f"{fad_row['laion_clap']:.9g} (relative difference {fad_row['relative_diff']:.2e}); features "
              f"from the eval.run cache vs laion-clap: max abs diff {fad_row['cached_features_max_abs_diff']:.3e}")
    if args.json:
        write_text(args.json, json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
