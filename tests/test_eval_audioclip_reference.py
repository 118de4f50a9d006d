"""AudioCLIP against embeddings that the original code produced (AndreyGuzhov/AudioCLIP @ 45327aa).

tests/data/audioclip/: recipe.py rebuilds the seeded weights in the released 861-key layout,
reference.npz holds the three input clips (a 440 Hz sine with clicks, two pieces of a drum loop;
[-1, 1] floats at 44.1 kHz, 1.6 s) and upstream's `encode_audio` outputs; make_reference.py made them.
"""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.features import load_extractor
from eval.features.audioclip import ESResNeXtFBSP, build_model, load_audio_branch

DATA = Path(__file__).parent / "data" / "audioclip"


def _recipe():
    spec = importlib.util.spec_from_file_location("audioclip_recipe", DATA / "recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(DATA / "reference.npz"))


@pytest.fixture(scope="module")
def weights():
    return _recipe().state_dict("audio.")      # the "audio.*" entries only: 370 of the 861 keys


def clips(ref, dtype=np.float32):
    return (ref["clips_int16"].astype(dtype) / 32768.0)        # (3, 70560) in [-1, 1], exact in float32


def test_reference_layout_is_the_released_one():
    layout = json.loads((DATA / "layout.json").read_text())
    assert len(layout) == 861
    audio = {k[len("audio."):]: tuple(shape) for k, (shape, _) in layout.items() if k.startswith("audio.")}
    own = {k: tuple(v.shape) for k, v in ESResNeXtFBSP().state_dict().items()}
    assert audio == own
    assert json.loads((DATA / "reference.json").read_text())["commit"].startswith("45327aa")


def test_float32_embeddings_equal_upstream_bit_for_bit(ref, weights):
    model = build_model(weights, "recipe")
    with torch.no_grad():
        emb = model(torch.from_numpy(clips(ref))).numpy()
    # Exact: the input map ((x + 32768) * 2) / 65535 - 1 and the fbsp weights are computed in
    # upstream's order; (x + 32768) * (2 / 65535) - 1 alone moves these embeddings by ~20%.
    np.testing.assert_array_equal(emb, ref["emb_eval_f32"])
    cos = emb[0] @ emb[1] / np.linalg.norm(emb[0]) / np.linalg.norm(emb[1])
    assert cos < 0.95                                             # the inputs give different embeddings


def test_float64_embeddings_equal_upstream(ref, weights):
    model = ESResNeXtFBSP().double()
    load_audio_branch(model, weights, "recipe")
    model.eval().freeze_fbsp()
    with torch.no_grad():
        emb = model(torch.from_numpy(clips(ref, np.float64))).numpy()
    np.testing.assert_allclose(emb, ref["emb_eval_f64"], rtol=1e-12, atol=1e-12 * np.abs(emb).max())


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, weights):
    path = tmp_path_factory.mktemp("audioclip") / "AudioCLIP-Full-Training.pt"
    torch.save(weights, path)
    return path


def test_train_mode_batchnorm_equals_upstream_evaluator(ref, checkpoint):
    """MM-Diffusion's evaluator runs AudioCLIP without .eval(): BatchNorm uses each batch's statistics."""
    ex = load_extractor("audioclip", checkpoint=checkpoint, device="cpu", batchnorm="train")
    emb = ex(clips(ref), sample_rate=44100)                       # one batch of 3 (batches of 8)
    np.testing.assert_array_equal(emb, ref["emb_train_f32"])
    ident = ex.identity()
    assert (ident["batchnorm"], ident["batch_size"], ident["input_range"]) == ("train", 8, "float")
    assert "MM-Diffusion" in ident["compat"]
    # A clip's features depend on its batch-mates in this mode, and not in the default one.
    assert not np.allclose(ex(clips(ref)[:2], sample_rate=44100)[0], emb[0], rtol=1e-3)
    with pytest.raises(ValueError, match="batch of one clip"):
        ex(clips(ref)[:1], sample_rate=44100)
    default = load_extractor("audioclip", checkpoint=checkpoint, device="cpu")
    assert default.identity()["batchnorm"] == "eval" and "batch_size" not in default.identity()
    # Running statistics are not updated by train-mode batches.
    torch.testing.assert_close(ex.model.bn1.running_var, build_model(torch.load(checkpoint), "c").bn1.running_var,
                               rtol=0, atol=0)


def test_batchnorm_option_is_checked():
    with pytest.raises(ValueError, match="batchnorm must be one of"):
        load_extractor("audioclip", batchnorm="training")
    with pytest.raises(ValueError, match="max_batch must be >= 2"):
        load_extractor("audioclip", batchnorm="train", max_batch=1)
