"""Captions for text-conditioned training: sidecar files (CSV, JSON lines) matched by item id or source path,
the synthetic cache's own captions, missing captions, and clips served with their caption embedding."""
import json

import pytest
import torch

from mmdiff.config import TINY
from mmdiff.data import synthetic
from mmdiff.data.cache import CacheItem
from mmdiff.data.dataset import AVClipDataset
from mmdiff.text.captions import CaptionedClips, CaptionError, embed_captions, item_captions, read_captions


class FakeEncoder:
    """Deterministic stand-in for TextEncoder: embedding = normalised character histogram."""

    dim, device = 384, torch.device("cpu")

    def __init__(self):
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        out = torch.zeros(len(texts), self.dim)
        for i, t in enumerate(texts):
            for ch in t:
                out[i, ord(ch) % self.dim] += 1
        return out / out.norm(dim=1, keepdim=True)


def items():
    return [CacheItem("a__000", 16, "videos/a.mp4"), CacheItem("a__001", 16, "videos/a.mp4"),
            CacheItem("b__000", 16, "videos/b.mp4", meta={"caption": "from meta"}),
            CacheItem("c__000", 16, "c.mp4")]


def test_csv_by_item_and_by_source(tmp_path):
    path = tmp_path / "caps.csv"
    path.write_text('source,item,caption\nvideos/a.mp4,,"a dog barks, twice"\n,c__000,rain\n'
                    'videos/b.mp4,,  overrides meta  \n')
    caps = read_captions(path)
    assert item_captions(items(), caps) == ["a dog barks, twice", "a dog barks, twice", "overrides meta", "rain"]


def test_jsonl_with_the_synthetic_sidecar_keys(tmp_path):
    path = tmp_path / "caps.jsonl"
    lines = [{"clip": "a__000", "caption": "first chunk"}, {"file": "./videos/a.mp4", "caption": "any chunk"},
             {"item": "c__000", "source": "c.mp4", "caption": ""}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    got = item_captions(items(), read_captions(path))
    assert got == ["first chunk", "any chunk", "from meta", ""]      # item id beats source; "" = null caption


def test_missing_captions_are_an_error_unless_allowed(tmp_path):
    with pytest.raises(CaptionError, match=r"3 of 4 items have no caption \(e.g. \['a__000', 'a__001', 'c__000'\]\)"):
        item_captions(items())
    assert item_captions(items(), allow_missing=True) == ["", "", "from meta", ""]
    path = tmp_path / "other.csv"
    path.write_text("item,caption\nzzz,unrelated\n")
    with pytest.raises(CaptionError, match="no caption in .*other.csv matches an item id or source"):
        item_captions(items(), read_captions(path), allow_missing=True)


@pytest.mark.parametrize("name, text, match", [
    ("bad.csv", "item,text\nx,y\n", "must have a 'caption' column and an 'item' or 'source' column"),
    ("bad.csv", "item,caption\n,orphan\n", r"bad.csv:2: needs an 'item' or 'source' value"),
    ("bad.csv", "item,caption\nx,one\nx,two\n", "item 'x' has two different captions"),
    ("bad.jsonl", '{"item": "x", "caption": "ok"}\nnot json\n', r"bad.jsonl:2: not a JSON object"),
    ("bad.jsonl", '["x", "y"]\n', "expected a JSON object per line"),
    ("bad.jsonl", '{"item": "x", "caption": 3}\n', "no 'caption' text"),
    ("bad.jsonl", "\n", "holds no captions"),
    ("bad.txt", "x\n", "must be a .csv or .jsonl file"),
])
def test_malformed_sidecars_get_clear_errors(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CaptionError, match=match):
        read_captions(path)
    with pytest.raises(CaptionError, match="does not exist"):
        read_captions(tmp_path / "nowhere.csv")


def test_each_distinct_caption_is_encoded_once():
    enc = FakeEncoder()
    emb = embed_captions(["b", "a", "b", "", "a"], enc)
    assert enc.calls == [["a", "b"]]                                  # one batch, blank caption not encoded
    assert emb.shape == (5, 384) and torch.equal(emb[0], emb[2]) and emb[3].abs().sum() == 0


def test_captioned_clips_from_the_synthetic_cache(tmp_path):
    synthetic.main(["--out", str(tmp_path), "--num", "3", "--seed", "0", "--preset", "tiny", "--cache", "--quiet"])
    clips = AVClipDataset(tmp_path, model_config=TINY, seed=0, clips_per_item=2)
    enc = FakeEncoder()
    ds = CaptionedClips.build(clips, enc)
    assert len(ds) == len(clips) == 6
    records = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    for i in range(len(ds)):
        video, audio, text = ds[i]
        v0, a0 = clips[i]
        assert torch.equal(video, v0) and torch.equal(audio, a0)        # the clip itself is unchanged
        info = ds.clip_info(i)
        caption = next(r["caption"] for r in records if r["clip"] == info["item"])
        assert info["caption"] == caption and torch.allclose(text, enc.encode([caption])[0])
    ds.set_epoch(3)
    assert clips.epoch == 3
