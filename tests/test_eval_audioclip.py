"""AudioCLIP audio branch: checkpoint layout (generated and hand-verified keys), fbsp closed forms,
framing, input handling. Equality with the original code: tests/test_eval_audioclip_reference.py."""

import numpy as np
import pytest
import scipy.signal
import torch

from eval.features import MissingWeightsError, load_extractor
from tests.eval_helpers import synthetic_audioclip_state_dict
from eval.features.audioclip import (NUM_SAMPLES, ESResNeXtFBSP, LinearFBSP, audio_state_dict, blackman_harris,
                                     fit_length, frame_signal)

# Keys and shapes of AudioCLIP-Full-Training.pt's audio branch, written out by hand from the public
# architecture (ResNeXt-50 32x4d + ESResNet attention + fbsp, embed_dim 1024, n_fft 2048, win 1654).
REAL_AUDIO_KEYS = {
    "audio.conv1.weight": (64, 3, 7, 7),
    "audio.layer1.0.conv2.weight": (128, 4, 3, 3),
    "audio.layer2.0.downsample.0.weight": (512, 256, 1, 1),
    "audio.layer4.2.conv3.weight": (2048, 1024, 1, 1),
    "audio.att1.conv_depth.weight": (64, 1, 3, 1),
    "audio.att4.conv_depth.weight": (1024, 1, 1, 5),
    "audio.att5.conv_point.weight": (2048, 2048, 1, 1),
    "audio.att5.bn.running_var": (2048,),
    "audio.fc.weight": (1024, 2048),
    "audio.fbsp.fc": (1025,),
    "audio.fbsp.bias": (0,),
    "audio.window": (1654,),
}


def synthetic_checkpoint(seed=0):
    return synthetic_audioclip_state_dict(seed)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ac") / "AudioCLIP-Full-Training.pt"
    sd = synthetic_checkpoint()
    torch.save(sd, path)
    return path, sd


def test_layout_matches_hand_verified_keys(ckpt):
    _, sd = ckpt
    for key, shape in REAL_AUDIO_KEYS.items():
        assert tuple(sd[key].shape) == shape, key
    assert set(audio_state_dict(sd)) == set(ESResNeXtFBSP().state_dict())


def test_loads_layer_by_layer_and_ignores_other_branches(ckpt):
    path, sd = ckpt
    ex = load_extractor("audioclip", checkpoint=path, device="cpu").load()
    for k, v in ex.model.state_dict().items():
        torch.testing.assert_close(v, sd["audio." + k])
    assert (ex.identity()["input_range"], ex.identity()["batchnorm"]) == ("float", "eval")


def test_wrong_checkpoint_is_named(tmp_path):
    torch.save({"visual.conv1.weight": torch.zeros(1)}, tmp_path / "clip.pt")
    with pytest.raises(KeyError, match="no 'audio"):
        load_extractor("audioclip", checkpoint=tmp_path / "clip.pt", device="cpu").load()
    sd = synthetic_checkpoint()
    sd["audio.fc.weight"] = torch.zeros(512, 2048)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"audio.fc.weight' has shape \(512, 2048\)"):
        load_extractor("audioclip", checkpoint=tmp_path / "bad.pt", device="cpu").load()


def test_fbsp_closed_forms():
    n = 64
    t = np.pi * np.linspace(-1, 1, n) + 1e-8
    layer = LinearFBSP(5, n)
    with torch.no_grad():
        layer.fc.copy_(torch.tensor([0.0, 1.0, 2.5, 3.0, 7.0]))
        layer.fb.copy_(torch.tensor([1.0, 4.0, 0.5, 2.0, 1.0]))
        layer.m.copy_(torch.tensor([0.0, 1.0, 1.0, 2.0, 0.0]))
    w = layer.weights().detach().double().numpy()
    fc, fb, m = (p.detach().double().numpy() for p in (layer.fc, layer.fb, layer.m))
    for k in range(5):
        arg = fb[k] * t / (m[k] + 1e-8)
        win = np.sinc(arg / np.pi) ** m[k]                 # m = 0: 1; m = 1: sinc; m = 2: sinc^2 (real, >= 0)
        expected = np.sqrt(fb[k]) * win * np.exp(-1j * fc[k] * t) / np.sqrt(n)
        np.testing.assert_allclose(w[k, :, 0], expected.real, atol=1e-6)
        np.testing.assert_allclose(w[k, :, 1], expected.imag, atol=1e-6)


def test_frame_signal_by_hand():
    x = torch.arange(1.0, 12.0)[None]                       # 11 samples, frames of 4, hop 3 -> 4 frames, pad 2
    f = frame_signal(x, 4, 3, torch.ones(4))
    np.testing.assert_array_equal(f[0].numpy(), [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9], [9, 10, 11, 0]])
    assert frame_signal(torch.zeros(1, 70560), 1654, 561, torch.ones(1654)).shape == (1, 124, 1654)


def test_blackman_harris_matches_scipy():
    np.testing.assert_allclose(blackman_harris(1654).numpy(),
                               scipy.signal.get_window("blackmanharris", 1654, fftbins=True), atol=1e-6)


def test_spectrogram_finds_a_tone():
    model = ESResNeXtFBSP().eval().freeze_fbsp()
    sr = 44100
    tone = 10000 * np.sin(2 * np.pi * 2000 * np.arange(NUM_SAMPLES) / sr)
    with torch.no_grad():
        db = model.spectrogram_db(torch.tensor(tone, dtype=torch.float32)[None])    # default fc: DFT bins
    assert db.shape == (1, 3, 341, 124)
    # fc_k = k on t in [-pi, pi] over 2048 samples: bin k <-> k * sr / n_fft Hz -> 2 kHz = bin ~92.9
    spectrum = db[0].reshape(3 * 341, -1).mean(1)
    assert abs(int(spectrum.argmax()) - 2000 * 2048 / sr) <= 1


def test_extractor_input_handling(ckpt):
    path, _ = ckpt
    ex = load_extractor("audioclip", checkpoint=path, device="cpu")
    rng = np.random.default_rng(0)
    wave8k = (0.3 * rng.standard_normal((2, 12800))).astype(np.float32)           # 1.6 s at 8 kHz
    feats = ex(wave8k, sample_rate=8000)
    assert feats.shape == (2, 1024) and np.isfinite(feats).all()
    # Same as handing the network the polyphase-resampled 44.1 kHz signal.
    up = scipy.signal.resample_poly(wave8k, 441, 80, axis=-1).astype(np.float32)
    np.testing.assert_allclose(ex(up, sample_rate=44100), feats, rtol=1e-4, atol=1e-4)
    # Longer audio is cut to 1.6 s: trailing samples do not matter.
    longer = np.concatenate([up[:1], rng.standard_normal((1, 5000)).astype(np.float32)], axis=1)
    np.testing.assert_allclose(ex(longer, sample_rate=44100), feats[:1], rtol=1e-4, atol=1e-4)
    assert fit_length(np.ones((1, 3), np.float32), 5).tolist() == [[1, 1, 1, 0, 0]]
    # Input range: [-1, 1] floats as they are (default, as MM-Diffusion) or scaled to int16 range.
    ex16 = load_extractor("audioclip", checkpoint=path, device="cpu", input_range="int16")
    np.testing.assert_allclose(ex16.prepare(up, 44100), 32768.0 * ex.prepare(up, 44100))
    assert ex16.identity()["input_range"] == "int16"
    with pytest.raises(ValueError, match="sample_rate"):
        ex(wave8k)
    with pytest.raises(ValueError, match=r"\(N, samples\)"):
        ex(wave8k[0], sample_rate=8000)


def test_missing_weights(tmp_path):
    with pytest.raises(MissingWeightsError, match="AudioCLIP-Full-Training.pt"):
        load_extractor("audioclip", weights_dir=tmp_path)(np.zeros((1, 100), np.float32), sample_rate=8000)


def test_the_test_weights_tell_inputs_apart(ckpt):
    """The synthetic weights every AudioCLIP/FAD test uses must give different embeddings for different sounds,
    or those tests compare rounding noise (they once gave one embedding to 1e-9 for every clip)."""
    path, _ = ckpt
    ex = load_extractor("audioclip", checkpoint=path, device="cpu")
    t = np.arange(NUM_SAMPLES) / 44100
    wav = np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in (220.0, 880.0)]
                   + [np.random.default_rng(0).uniform(-0.3, 0.3, NUM_SAMPLES)]).astype(np.float32)
    emb = ex(wav, sample_rate=44100)                                              # (3, 1024)
    size = np.abs(emb).mean()
    gaps = [np.abs(emb[i] - emb[j]).mean() for i, j in ((0, 1), (0, 2), (1, 2))]
    assert min(gaps) > 0.01 * size, (gaps, size)
