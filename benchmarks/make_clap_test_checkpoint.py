"""A random-weight laion-clap checkpoint in the released file layout, built by laion-clap itself.

    HF_HUB_OFFLINE=1 .venv-clap/bin/python -m benchmarks.make_clap_test_checkpoint --out DIR/630k-audioset-best.pt
    HF_HUB_OFFLINE=1 .venv-clap/bin/python -m benchmarks.make_clap_test_checkpoint --amodel HTSAT-base --out DIR/music.pt

Runs in the CLAP environment (requirements-clap.txt), offline. No real CLAP weights are needed:
this is for checking that `eval.features.clap` reads the files laion-clap writes and computes the
same embeddings as laion-clap (benchmarks/check_clap.py), not for measuring anything.

The model is laion-clap 1.1.7's own full CLAP model, made the way `CLAP_Module(enable_fusion=False,
amodel=..., tmodel="roberta")` makes it for 630k-audioset-best.pt (HTSAT-tiny) or the music
checkpoints (HTSAT-base): the HTSAT audio branch, the audio/text projections and transforms, the
logit scales, and a roberta-base text branch. roberta-base normally comes from the Hugging Face
hub (`RobertaModel.from_pretrained('roberta-base')`); offline it is built from roberta-base's
published config.json (written out below) with random weights, and the tokenizers laion-clap
loads at import time are replaced by nothing while it is built (they are not used here).

Weights: laion-clap's own random initialisation, then every learnable tensor except the fixed
STFT/mel filter banks (which the released files hold as computed from the config) is perturbed
(seeded) so that no bias is zero and no norm is the identity; batch-norm running statistics are
set to random means and variances. Saved as {'state_dict': {'module.' + name: tensor},
'epoch': ..., 'name': ...}, the layout of the released files (DistributedDataParallel prefix,
`text_branch.embeddings.position_ids` included as older transformers stored it).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from mmdiff.atomic import atomic_path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# roberta-base's config.json on the Hugging Face hub (FacebookAI/roberta-base).
ROBERTA_BASE = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
                    attention_probs_dropout_prob=0.1, max_position_embeddings=514, type_vocab_size=1,
                    initializer_range=0.02, layer_norm_eps=1e-05, pad_token_id=1, bos_token_id=0,
                    eos_token_id=2)
FIXED = ("spectrogram_extractor.", "logmel_extractor.")     # DSP constants, not learnt


@contextlib.contextmanager
def offline_laion_clap():
    """While active, laion-clap imports and builds its roberta model without the hub.

    Tokenizers' `from_pretrained` returns None (laion-clap loads three at import time and one in
    CLAP_Module; the audio path never uses them); `RobertaModel.from_pretrained('roberta-base')`
    builds RobertaModel(RobertaConfig(**ROBERTA_BASE)) with random weights.
    """
    import transformers

    tokenizers = [getattr(transformers, n) for n in ("BertTokenizer", "RobertaTokenizer", "BartTokenizer")]
    saved = [(c, c.__dict__.get("from_pretrained")) for c in tokenizers]
    saved.append((transformers.RobertaModel, transformers.RobertaModel.__dict__.get("from_pretrained")))

    def no_tokenizer(cls, *args, **kwargs):
        return None

    def roberta_base(cls, name, *args, **kwargs):
        if name != "roberta-base":
            raise ValueError(f"offline_laion_clap builds roberta-base only, not {name!r}")
        return cls(transformers.RobertaConfig(**ROBERTA_BASE))

    try:
        for c in tokenizers:
            c.from_pretrained = classmethod(no_tokenizer)
        transformers.RobertaModel.from_pretrained = classmethod(roberta_base)
        yield
    finally:
        for c, fn in saved:
            if fn is None:
                with contextlib.suppress(AttributeError):
                    delattr(c, "from_pretrained")
            else:
                setattr(c, "from_pretrained", fn)


def laion_clap_module(amodel: str = "HTSAT-tiny", device: str = "cpu"):
    """laion_clap.CLAP_Module(enable_fusion=False, amodel=amodel, tmodel='roberta'), built offline."""
    with offline_laion_clap():
        import laion_clap

        return laion_clap.CLAP_Module(enable_fusion=False, device=device, amodel=amodel, tmodel="roberta")


def randomise_(model, seed: int) -> None:
    """Perturb every learnable tensor (not the STFT/mel banks); random batch-norm statistics."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(tuple("audio_branch." + f for f in FIXED)):
                continue
            scale = 0.1 if p.ndim == 1 else 0.02            # biases and norm scales move more
            p.add_(torch.randn(p.shape, generator=g) * scale)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.5)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) * 1.5 + 0.5)


def released_layout(model, epoch: int, name: str) -> dict:
    """{'state_dict': {'module.<key>': tensor}, 'epoch', 'name'}, as laion-clap's training saved it."""
    import torch

    state = {"module." + k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    key = "module.text_branch.embeddings.position_ids"       # persistent in transformers < 4.31
    if key not in state:
        state[key] = torch.arange(ROBERTA_BASE["max_position_embeddings"]).unsqueeze(0)
    return {"epoch": epoch, "name": name, "state_dict": state}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="checkpoint path to write")
    p.add_argument("--amodel", default="HTSAT-tiny", choices=["HTSAT-tiny", "HTSAT-base"],
                   help="audio encoder: HTSAT-tiny (630k-audioset-best.pt) or HTSAT-base (music checkpoints)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import torch

    torch.manual_seed(args.seed)
    module = laion_clap_module(args.amodel)
    randomise_(module.model, args.seed)
    ckpt = released_layout(module.model, epoch=45, name=f"random-{args.amodel}-seed{args.seed}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(ckpt, tmp)
    n = sum(v.numel() for v in ckpt["state_dict"].values())
    groups = sorted({k.split(".")[1] for k in ckpt["state_dict"]})
    print(f"wrote {out}: {args.amodel} + roberta, {len(ckpt['state_dict'])} tensors, {n / 1e6:.1f} M values, "
          f"{out.stat().st_size / 2**20:.0f} MiB; top-level modules: {', '.join(groups)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
