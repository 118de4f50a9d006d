"""Make the AudioCLIP reference embeddings in this folder with the ORIGINAL AudioCLIP code.

Upstream: AndreyGuzhov/AudioCLIP at commit 45327aa (model/audioclip.py, model/esresnet/*,
utils/transforms.py), run unchanged. Its import chain pulls in training-only packages (visdom,
pytorch-ignite, librosa, pandas, scikit-learn, ftfy, regex) and the text tokenizer, which reads a Git
LFS vocabulary at import; where one is not installed (the tokenizer: always) an empty stand-in module
is registered. None of them is used by `encode_audio`.

    python -m venv /tmp/ac && /tmp/ac/bin/pip install torch torchvision scipy soundfile termcolor tqdm
    git clone https://github.com/AndreyGuzhov/AudioCLIP /tmp/AudioCLIP && git -C /tmp/AudioCLIP checkout 45327aa
    /tmp/ac/bin/python tests/data/audioclip/make_reference.py --upstream /tmp/AudioCLIP

Weights: recipe.py (seeded numpy values in the full released layout; layout.json is written from
upstream's own AudioCLIP() state dict). Inputs (int16, scaled by 1/32768 into [-1, 1] as MM-Diffusion's
evaluator feeds them, 1.6 s = 70,560 samples at 44.1 kHz):
  0: a 440 Hz sine (amplitude 0.5) with a click (+0.9, 8 samples) every 0.1 s, made here;
  1, 2: the first two 1.6 s pieces of the left channel of sonic-pi's loop_amen_full.flac (44.1 kHz,
     Debian package sonic-pi-samples).
Outputs (reference.npz): upstream `AudioCLIP.encode_audio` of the batch of three
  emb_eval_f32 (eval mode, float32), emb_eval_f64 (eval mode, float64: default dtype float64),
  emb_train_f32 (training mode, float32: BatchNorm uses the statistics of this batch, as
  MM-Diffusion's evaluator runs it without calling .eval()).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
UPSTREAM_COMMIT = "45327aa"
RATE, NUM_SAMPLES = 44_100, 70_560
AMEN = "/usr/share/sonic-pi/samples/loop_amen_full.flac"
STAND_INS = ("visdom", "ignite", "ignite.engine", "ignite.metrics", "ignite.handlers", "librosa", "pandas",
             "sklearn", "sklearn.model_selection", "ftfy", "regex")
# The text tokenizer reads assets/bpe_simple_vocab_16e6.txt.gz at import, a Git LFS file; the audio
# branch does not use it, so its module is stood in too.
UPSTREAM_STAND_INS = ("utils.simple_tokenizer",)


class _StandIn(types.ModuleType):
    """An empty module whose every attribute is a placeholder class (names used in annotations resolve)."""

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return type(attr, (), {})


def stand_in_unused_imports() -> list[str]:
    made = []
    for name in STAND_INS + UPSTREAM_STAND_INS:
        try:
            if name in UPSTREAM_STAND_INS:
                raise ImportError(name)
            importlib.import_module(name)
        except ImportError:
            module = _StandIn(name)
            module.__spec__ = importlib.machinery.ModuleSpec(name, None)
            sys.modules[name] = module
            made.append(name)
    return made


def sine_with_clicks() -> np.ndarray:
    t = np.arange(NUM_SAMPLES) / RATE
    x = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    for start in range(0, NUM_SAMPLES, RATE // 10):
        x[start: start + 8] = 0.9
    return np.round(x * 32767).astype(np.int16)


def amen_pieces(path: str) -> np.ndarray:
    import soundfile as sf

    wave, rate = sf.read(path, dtype="int16", always_2d=True)
    assert rate == RATE, rate
    left = wave[:, 0]
    return np.stack([left[:NUM_SAMPLES], left[NUM_SAMPLES: 2 * NUM_SAMPLES]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="checkout of AndreyGuzhov/AudioCLIP at 45327aa")
    ap.add_argument("--amen", default=AMEN)
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--commit", default=None, help="upstream commit, where --upstream is not a git checkout "
                                                   "(e.g. a `git archive` export)")
    args = ap.parse_args()

    commit = args.commit or subprocess.run(["git", "-C", args.upstream, "rev-parse", "HEAD"], capture_output=True,
                                           text=True).stdout.strip()
    if not commit.startswith(UPSTREAM_COMMIT):
        sys.exit(f"error: upstream is at {commit or 'an unknown commit'}, expected {UPSTREAM_COMMIT} (see --commit)")
    sys.path.insert(0, str(Path(args.upstream).resolve()))
    stand_ins = stand_in_unused_imports()
    sys.path.insert(0, str(HERE))
    import torch
    from model import AudioCLIP
    import recipe

    torch.manual_seed(0)
    model = AudioCLIP(pretrained=False)
    lay = {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in model.state_dict().items()}
    assert len(lay) == 861, len(lay)
    recipe.LAYOUT.write_text(json.dumps(lay) + "\n")               # the recipe's key list comes from upstream
    Path(args.out).mkdir(parents=True, exist_ok=True)
    sd = recipe.state_dict()
    model.load_state_dict(sd, strict=True)

    clips = np.concatenate([sine_with_clicks()[None], amen_pieces(args.amen)])           # (3, 70560) int16
    wave32 = torch.from_numpy(clips.astype(np.float32) / 32768.0)                        # [-1, 1]
    with torch.no_grad():
        emb_eval_f32 = model.eval().encode_audio(wave32).numpy()
        torch.set_default_dtype(torch.float64)
        model64 = AudioCLIP(pretrained=False)
        model64.load_state_dict(sd, strict=True)
        model64 = model64.double().eval()
        emb_eval_f64 = model64.encode_audio(torch.from_numpy(clips.astype(np.float64) / 32768.0)).numpy()
        torch.set_default_dtype(torch.float32)
        emb_train_f32 = model.train().encode_audio(wave32).numpy()

    np.savez_compressed(Path(args.out) / "reference.npz", clips_int16=clips, emb_eval_f32=emb_eval_f32,
                        emb_eval_f64=emb_eval_f64, emb_train_f32=emb_train_f32)
    meta = {"upstream": "AndreyGuzhov/AudioCLIP", "commit": commit, "call": "AudioCLIP(pretrained=False).encode_audio",
            "torch": torch.__version__, "numpy": np.__version__, "recipe_seed": recipe.SEED, "keys": len(lay),
            "stand_in_modules": stand_ins, "inputs": ["sine 440 Hz + clicks", "amen 0-1.6 s", "amen 1.6-3.2 s"],
            "input_scale": "int16 / 32768 (float in [-1, 1])"}
    (Path(args.out) / "reference.json").write_text(json.dumps(meta, indent=1) + "\n")
    rel = np.abs(emb_eval_f32 - emb_eval_f64).max(1) / np.abs(emb_eval_f64).max(1)
    cos = [float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in
           [(emb_eval_f64[0], emb_eval_f64[1]), (emb_eval_f64[1], emb_eval_f64[2])]]
    print(f"upstream float32 vs float64, max|diff| / max|x| per clip: {rel}; cos(0,1), cos(1,2) = {cos}")
    print(f"train vs eval mode max rel: {np.abs(emb_train_f32 - emb_eval_f32).max() / np.abs(emb_eval_f32).max():.3g}")


if __name__ == "__main__":
    main()
