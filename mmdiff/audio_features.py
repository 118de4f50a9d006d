"""The one audio analysis behind AV-Align and the spectrogram view: one STFT, its mel spectrogram, onsets.

AV-Align (`eval.av_align`, Yariv et al. 2023) detects audio onsets as its published code does: the
waveform as float32, resampled to 22,050 Hz (librosa.load's default rate and resampler, `soxr_hq`),
`librosa.onset.onset_strength` (log power of a 128-band mel spectrogram of a 2048-sample Hann STFT with a
512-sample hop, spectral flux) and `librosa.onset.onset_detect` with librosa's defaults. This module owns
those settings and computes the STFT once (`power_spectrum`); the onset envelope (`onset_strength`), the
onset times (`onset_times`) and the view's mel spectrogram (`mel_db`) all read that one STFT.

The view analyses at the metric's settings rather than at the clip's own rate: onset_detect's windows are
counted in STFT frames, so onsets found at another rate or hop are not the ones the metric matches against
video peaks. Drawn this way, an onset in the view is an onset AV-Align counts, and one it misses is not
drawn. The cost is the metric's time resolution (a 23.2 ms hop, about 4 columns per frame at 10 fps); the
view only leaves out the mel bands above the clip's own Nyquist frequency, which resampling left empty.

`onset_strength(power_spectrum(y, rate))` equals `librosa.onset.onset_strength(y=y', sr=22050)` of the
resampled y' bit for bit (tests/test_eval_av_align.py compares onsets with the published script's).
Layouts: audio float (T,) mono in [-1, 1]; power (1 + N_FFT // 2, N) float32; envelopes (N,).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ONSET_RATE = 22050       # Hz: librosa.load's default rate, at which the published AV-Align detects onsets
RESAMPLER = "soxr_hq"    # librosa.load's default res_type
N_FFT = 2048             # librosa's default STFT window (samples at ONSET_RATE): 92.9 ms
HOP = 512                # librosa's default hop: 23.2 ms


@dataclass(frozen=True)
class PowerSpectrum:
    power: np.ndarray     # (1 + N_FFT // 2, N) float32 |STFT|^2 at ONSET_RATE, frame k centred at k * HOP
    source_rate: int      # Hz: the rate of the audio it was computed from

    @property
    def times(self) -> np.ndarray:
        """(N,) centre of each STFT frame in seconds."""
        return np.arange(self.power.shape[1]) * HOP / ONSET_RATE


def to_onset_rate(audio: np.ndarray, audio_rate: int) -> np.ndarray:
    """Mono waveform (T,) at `audio_rate` -> float32 (T',) at ONSET_RATE, as `librosa.load` reads a file."""
    import librosa

    y = np.asarray(audio)
    if y.ndim != 1:
        raise ValueError(f"audio must be a mono waveform (T,), got shape {y.shape}")
    if audio_rate <= 0:
        raise ValueError(f"audio_rate must be positive, got {audio_rate}")
    y = y.astype(np.float32)                                   # librosa.load's dtype
    if audio_rate != ONSET_RATE:
        y = librosa.resample(y, orig_sr=audio_rate, target_sr=ONSET_RATE, res_type=RESAMPLER)
    return y


def power_spectrum(audio: np.ndarray, audio_rate: int) -> PowerSpectrum:
    """The one STFT: |STFT|^2 of the waveform at ONSET_RATE, librosa's defaults (Hann, centred, zero-padded)."""
    import librosa

    y = to_onset_rate(audio, audio_rate)
    power = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP)) ** 2          # (1 + N_FFT // 2, N)
    return PowerSpectrum(power, int(audio_rate))


def onset_strength(spec: PowerSpectrum) -> np.ndarray:
    """librosa's onset strength (N,) of the spectrum (spectral flux of the 128-band mel dB), as the metric's."""
    import librosa

    mel = librosa.feature.melspectrogram(S=spec.power, sr=ONSET_RATE)
    return librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=ONSET_RATE)


def onset_times(envelope: np.ndarray) -> np.ndarray:
    """Onset times (K,) in seconds picked from an onset envelope (N,) by `librosa.onset.onset_detect`."""
    import librosa

    frames = librosa.onset.onset_detect(onset_envelope=envelope, sr=ONSET_RATE)
    return librosa.frames_to_time(frames, sr=ONSET_RATE)


def mel_db(spec: PowerSpectrum, n_mels: int = 64, top_db: float = 80.0) -> tuple[np.ndarray, np.ndarray]:
    """The view's log-mel spectrogram of the spectrum, up to the source's Nyquist frequency.

    Returns (mel_db (n_mels, N) float32 in dB re. the maximum, clipped at -top_db; the centre frequency of
    each mel band (n_mels,) in Hz). Slaney mel scale, librosa's default, as in the onset envelope.
    """
    import librosa

    fmax = min(spec.source_rate, ONSET_RATE) / 2
    mel = librosa.feature.melspectrogram(S=spec.power, sr=ONSET_RATE, n_mels=n_mels, fmax=fmax)
    db = librosa.power_to_db(mel, ref=np.max, top_db=top_db)
    centres = librosa.mel_frequencies(n_mels + 2, fmax=fmax)[1:-1]
    return db.astype(np.float32), centres
