"""Reference AV-Align scores from the published code, for tests/test_eval_av_align.py.

The published metric is `av_align.py` of guyyariv/TempoTokens at commit
bf0b1e3a (UPSTREAM_COMMIT below; its first release does not run). Its main block reads a folder of
`NAME.mp4` + `NAME.wav` pairs: frames with cv2.VideoCapture (BGR), fps from CAP_PROP_FPS, audio with
librosa.load (22,050 Hz mono). So the inputs are written here as exactly those files.

Two steps, two environments:

1. inputs (this project's venv: it needs mmdiff for the synthetic clips, opencv and soundfile):

       python tests/data/av_align/make_reference.py inputs

   cuts short real clips from media that Debian ships (opencv-doc's Megamind.avi, vtest.avi, tree.avi;
   sonic-pi's drum loops for the sound), downscaled, plus clips of mmdiff.data.synthetic, and writes
   them as NAME.mp4 (mp4v) + NAME.wav (16-bit PCM, mono) into tests/data/av_align/clips/.

2. score (a scratch venv with the published script's imports: numpy, opencv-python-headless, librosa;
   the same versions as requirements.txt):

       git clone https://github.com/guyyariv/TempoTokens && git -C TempoTokens checkout bf0b1e3
       SCRATCH_PYTHON tests/data/av_align/make_reference.py score --upstream TempoTokens/av_align.py

   imports the unchanged script and, per clip, makes the calls its main block makes (extract_frames,
   detect_audio_peaks, detect_video_peaks, calc_intersection_over_union), recording every intermediate
   (onset times, flow trajectory, peaks, score) and the sha256 of the decoded frames; then runs the
   script itself on the folder (`--input_dir clips/`) and records the mean it prints. The video part is
   run REPEATS times to see whether its double-computed first flow ever differs (its known frame-1
   nondeterminism). Output: tests/data/av_align/reference.json.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLIPS = HERE / "clips"
UPSTREAM_REPO = "guyyariv/TempoTokens"
UPSTREAM_COMMIT = "bf0b1e3"
REPEATS = 5

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")    # Debian package opencv-doc
SONIC_PI = Path("/usr/share/sonic-pi/samples")                   # Debian package sonic-pi-samples

# name, source video, first frame, frames, width x height, sound, wav rate (Hz)
REAL = [
    ("megamind_a", "Megamind.avi", 2, 72, (144, 104), "loop_amen", 11025),        # 3 s, no cut
    ("megamind_b", "Megamind.avi", 80, 72, (144, 104), "loop_breakbeat", 16000),  # scene cut at frame 18
    ("megamind_c", "Megamind.avi", 170, 96, (144, 104), "loop_perc1", 8000),      # scene cut at frame 30
    ("vtest", "vtest.avi", 100, 40, (160, 120), "loop_tabla", 8000),              # walkers, 10 fps
    ("tree", "tree.avi", 0, 21, (128, 96), "drum_roll", 22050),                   # 15 fps, no resampling
]
# synthetic: (name, index, seed, frames, fps, size, rate) of mmdiff.data.synthetic.make_clip
SYNTHETIC = [(f"synthetic_{i}", i, 7, 16, 10, 32, 8000) for i in range(6)] + [
    ("synthetic_64", 0, 11, 16, 10, 64, 16000)]


def _write_mp4(path: Path, frames_bgr, fps: float) -> None:
    import cv2

    h, w = frames_bgr[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise SystemExit(f"error: OpenCV cannot write {path}")
    for f in frames_bgr:
        writer.write(f)
    writer.release()


def _write_wav(path: Path, audio, rate: int) -> None:
    import numpy as np
    import soundfile as sf

    sf.write(str(path), np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16")


def _sound(name: str, seconds: float, rate: int):
    """A sonic-pi sample mixed to mono, resampled to `rate` and looped to `seconds`, peak 0.9."""
    import librosa
    import numpy as np

    y, _ = librosa.load(str(SONIC_PI / f"{name}.flac"), sr=rate, mono=True)
    n = int(round(seconds * rate))
    y = np.tile(y, n // len(y) + 1)[:n]
    return 0.9 * y / np.abs(y).max()


def make_inputs() -> None:
    import cv2

    sys.path.insert(0, str(HERE.parents[2]))          # the repository root
    from mmdiff.data.synthetic import make_clip

    CLIPS.mkdir(parents=True, exist_ok=True)
    for name, src, start, count, size, sound, rate in REAL:
        cap = cv2.VideoCapture(str(OPENCV_DATA / src))
        fps = cap.get(cv2.CAP_PROP_FPS)
        cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        frames = []
        for _ in range(count):
            ok, f = cap.read()
            if not ok:
                raise SystemExit(f"error: {src} ended before frame {start + count}")
            frames.append(cv2.resize(f, size, interpolation=cv2.INTER_AREA))
        cap.release()
        _write_mp4(CLIPS / f"{name}.mp4", frames, fps)
        _write_wav(CLIPS / f"{name}.wav", _sound(sound, count / fps, rate), rate)
    for name, index, seed, frames, fps, size, rate in SYNTHETIC:
        clip = make_clip(index, seed, frames, fps, size, rate)
        _write_mp4(CLIPS / f"{name}.mp4", [f[:, :, ::-1].copy() for f in clip.video], fps)   # RGB -> BGR
        _write_wav(CLIPS / f"{name}.wav", clip.audio, rate)
    print(f"wrote {len(REAL) + len(SYNTHETIC)} clips to {CLIPS}")


def _load_upstream(path: Path):
    spec = importlib.util.spec_from_file_location("upstream_av_align", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def score(upstream: Path) -> None:
    import cv2
    import librosa
    import numpy as np
    import soundfile
    import soxr

    up = _load_upstream(upstream)
    clips = []
    for mp4 in sorted(CLIPS.glob("*.mp4")):
        frames, fps = up.extract_frames(str(mp4))
        audio_peaks = up.detect_audio_peaks(str(mp4.with_suffix(".wav")))
        runs = [up.detect_video_peaks(frames, fps) for _ in range(REPEATS)]
        trajectory, video_peaks = runs[0]
        try:
            iou = up.calc_intersection_over_union(audio_peaks, video_peaks, fps)
        except ZeroDivisionError:                 # no peak in either stream: the script crashes
            iou = None
        clips.append({
            "name": mp4.stem, "fps": fps, "frames": len(frames), "frame_shape": list(frames[0].shape),
            "frames_sha256": hashlib.sha256(np.stack(frames).tobytes()).hexdigest(),
            "audio_peaks": [float(t) for t in audio_peaks],
            "flow_trajectory": [float(x) for x in trajectory],
            "video_peaks": [float(t) for t in video_peaks],
            "score": iou,
            "first_flow_equal_in_all_runs": all(r[0][0] == r[0][1] for r in runs),
            "trajectories_equal_across_runs": all(r[0] == trajectory for r in runs),
        })
    cli = subprocess.run([sys.executable, str(upstream), "--input_dir", str(CLIPS) + os.sep],
                         capture_output=True, text=True, check=True)
    out = {
        "upstream": {"repo": UPSTREAM_REPO, "commit": UPSTREAM_COMMIT, "file": "av_align.py"},
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "opencv": cv2.__version__,
                     "librosa": librosa.__version__, "soundfile": soundfile.__version__,
                     "soxr": soxr.__version__},
        "repeats": REPEATS,
        "cli_stdout": cli.stdout.strip(),
        "clips": clips,
    }
    sys.path.insert(0, str(HERE.parents[2]))          # the repository root: mmdiff.atomic needs only stdlib
    from mmdiff.atomic import write_text

    write_text(HERE / "reference.json", json.dumps(out, indent=1) + "\n")
    for c in clips:
        print(f"{c['name']:14s} fps {c['fps']:.6g}  audio {len(c['audio_peaks']):2d}  video "
              f"{len(c['video_peaks']):2d}  score {c['score']}")
    print(out["cli_stdout"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("inputs", help="write the clips (this project's venv)")
    sp = sub.add_parser("score", help="score them with the published script (scratch venv)")
    sp.add_argument("--upstream", type=Path, required=True, help="TempoTokens/av_align.py at bf0b1e3")
    args = ap.parse_args()
    if args.cmd == "inputs":
        make_inputs()
    else:
        score(args.upstream)


if __name__ == "__main__":
    main()
