"""The bad-input catalogue of `mmdiff.train`, `mmdiff.train_sr`, `mmdiff.sample` and (for media)
`mmdiff.data.prepare`: every ordinary mistake ends in one line `error: ...` (argparse's own line for flags
refused at parse time) and exit status 2, never a traceback, never a silent success. docs/errors.md lists
the same cases as a table.

Cases that would start training on a mistake give a --data folder that does not exist, so they end at
once on code that checks nothing at parse time (a traceback) instead of training.
"""
from __future__ import annotations

import os
import re
import shutil
from fractions import Fraction
from pathlib import Path

import av
import pytest

from data_media import pattern_frames, tone_signal, write_source
from studio_fixtures import sine, tiny_checkpoint, write_pcm_wav

MEGAMIND = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> dict[str, Path]:
    """The files the cases point at."""
    from mmdiff.data import synthetic

    root = tmp_path_factory.mktemp("catalogue")
    paths = {"tmp": root, "missing": root / "no-such-folder"}
    paths["cache"] = root / "cache"
    synthetic.main(["--out", str(paths["cache"]), "--num", "2", "--seed", "0", "--preset", "tiny", "--cache",
                    "--quiet"])
    paths["sr_cache"] = root / "sr_cache"
    synthetic.main(["--out", str(paths["sr_cache"]), "--num", "1", "--seed", "0", "--preset", "tiny", "--size", "128",
                    "--cache", "--quiet"])
    paths["raw"] = root / "raw"
    paths["raw"].mkdir()
    write_source(paths["raw"] / "clip.avi", pattern_frames(20, 48, 64), Fraction(10),
                 tone_signal(2 * 48000, 48000, 2), 48000, vcodec="mpeg4", acodec="ac3")
    (root / "empty").mkdir()
    paths["empty"] = root / "empty"
    paths["export"] = tiny_checkpoint(root / "export.pt")                  # weights only, no optimizer
    paths["junk"] = root / "junk.pt"
    paths["junk"].write_bytes(b"not a checkpoint" * 64)
    paths["done"] = root / "done"
    paths["done"].mkdir()
    shutil.copy(paths["export"], paths["done"] / "last.pt")
    paths["trained"] = root / "trained"                                     # a real run at step 2
    from mmdiff.train import main as train_main

    assert train_main(["--data", str(paths["cache"]), "--out", str(paths["trained"]), "--steps", "2", "--batch-size",
                       "1", "--preview-every", "0", "--workers", "0", "--device", "cpu"]) == 0
    paths["mine"] = root / "mine"                                           # a user's folder with their own log
    paths["mine"].mkdir()
    (paths["mine"] / "log.csv").write_text("step,accuracy\n100,0.5\n200,0.7\n")
    paths["afile"] = root / "afile"
    paths["afile"].write_text("a user's file\n")
    paths["click"] = write_pcm_wav(root / "click.wav", sine(0.05, 8000), 8000)
    paths["tone"] = write_pcm_wav(root / "tone.wav", sine(3.0, 8000), 8000)
    paths["notes"] = root / "notes.wav"
    paths["notes"].write_text("not audio\n" * 50)
    return paths


def run_cli(main, argv: list[str], capsys) -> tuple[int, str]:
    """(exit status, stderr) of a command's main(argv) run in this process."""
    try:
        status = main(argv)
    except SystemExit as e:
        status = e.code
    return status, capsys.readouterr().err


def check_one_line(status, err: str, message: str) -> None:
    assert status == 2, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert re.match(r"^(python (-m [\w.]+|app\.py): )?error: ", last), last
    assert re.search(message, last), (message, last)


def fill(argv: str, w: dict[str, Path]) -> list[str]:
    return [a.format(**{k: str(v) for k, v in w.items()}) for a in argv.split()]


TRAIN_CASES = [  # case id, arguments, what the user sees (regex on the last line)
    ("batch-size-0", "--data {missing} --out {tmp}/r --batch-size 0",
     r"argument --batch-size: must be a whole number >= 1, got 0"),
    ("save-every-0", "--data {missing} --out {tmp}/r --save-every 0", r"argument --save-every: must be .* >= 1"),
    ("steps-negative", "--data {missing} --out {tmp}/r --steps -5", r"argument --steps: must be .* >= 1, got -5"),
    ("lr-0", "--data {missing} --out {tmp}/r --lr 0", r"argument --lr: must be > 0, got 0"),
    ("ema-1", "--data {missing} --out {tmp}/r --ema 1", r"argument --ema: must be in \[0, 1\), got 1"),
    ("seed-negative", "--data {missing} --out {tmp}/r --seed -1", r"argument --seed: must be a whole number >= 0"),
    ("clips-per-item-0", "--data {missing} --out {tmp}/r --clips-per-item 0", r"argument --clips-per-item"),
    ("lr-not-a-number", "--data {missing} --out {tmp}/r --lr fast", r"argument --lr: expected a number, got 'fast'"),
    ("device-unknown", "--data {missing} --out {tmp}/r --device gpu0",
     r"error: --device gpu0: expected auto, cpu, cuda or cuda:N"),
    ("data-missing", "--data {missing} --out {tmp}/r", r"error: --data .*no-such-folder does not exist"),
    ("data-not-a-cache", "--data {empty} --out {tmp}/r", r"error: .*empty: no index\.json; is this a cache"),
    ("resume-without-checkpoint", "--data {cache} --out {tmp}/fresh --resume --device cpu",
     r"error: --resume: .*fresh/last\.pt does not exist, so there is no run to continue"),
    ("out-has-a-run", "--data {cache} --out {done} --device cpu", r"error: .*done/last\.pt exists; pass --resume"),
    ("out-holds-a-users-log", "--data {cache} --out {mine} --device cpu --steps 1",
     r"error: --out .*mine already holds log\.csv \(and no last\.pt to resume\): a new run would overwrite them"),
    ("out-is-a-file", "--data {cache} --out {afile} --device cpu --steps 1",
     r"error: --out .*afile is a file, not a folder"),
    ("resume-past-steps", "--data {cache} --out {trained} --resume --device cpu --steps 1",
     r"error: --resume: .*trained/last\.pt is already at step 2, and --steps 1 asks for no more"),
    ("resume-inference-export", "--data {cache} --out {done} --resume --device cpu",
     r"error: .*last\.pt is an inference export; it cannot resume training"),
    ("init-from-missing", "--data {cache} --out {tmp}/r2 --init-from {tmp}/nope.pt --device cpu",
     r"error: checkpoint .*nope\.pt does not exist"),
    ("init-from-junk", "--data {cache} --out {tmp}/r3 --init-from {junk} --device cpu",
     r"error: .*junk\.pt is not a checkpoint \(not a file written by torch\.save\)"),
]


@pytest.mark.parametrize("case, argv, message", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_bad_input(w, capsys, case, argv, message):
    from mmdiff.train import main

    check_one_line(*run_cli(main, fill(argv, w), capsys), message)
    assert (w["mine"] / "log.csv").read_text() == "step,accuracy\n100,0.5\n200,0.7\n"      # untouched
    assert w["afile"].read_text() == "a user's file\n"


def test_train_into_a_folder_another_run_holds_is_one_line(w, capsys):
    from mmdiff.outdir import FolderLock
    from mmdiff.train import main

    busy = w["tmp"] / "busy"
    busy.mkdir()
    with FolderLock(busy):
        status, err = run_cli(main, fill("--data {cache} --out {tmp}/busy --device cpu --steps 1", w), capsys)
    check_one_line(status, err, r"error: .*busy is in use by another run")


def test_train_raw_videos_under_torchrun_name_the_prepare_command(w, capsys, monkeypatch):
    from mmdiff.train import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    status, err = run_cli(main, fill("--data {raw} --out {tmp}/r4 --device cpu", w), capsys)
    check_one_line(status, err, r"holds raw videos, not a prepared cache; prepare it once first: python -m "
                                r"mmdiff.data.prepare --src .*raw --out .*raw-cache-32px-10fps-8000hz --fps 10 "
                                r"--size 32 --audio-rate 8000")


def test_train_prepares_a_raw_video_folder_beside_it_and_resumes(w, capsys):
    """The folder of raw videos users try first: prepared into a cache beside it (then the run goes on; here
    it stops at the existing run folder, before any step); a second run reuses the cache."""
    from mmdiff.data.cache import load_index
    from mmdiff.train import main

    status, err = run_cli(main, fill("--data {raw} --out {done} --device cpu", w), capsys)
    cache = w["tmp"] / "raw-cache-32px-10fps-8000hz"
    assert f"preparing them into {cache}" in err and "kept 1 sources -> 1 items" in err
    check_one_line(status, err, r"done/last\.pt exists")              # it got as far as the run folder
    index = load_index(cache)
    assert [i.frames for i in index.items] == [20] and index.spec.video_size == (32, 32)
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")}
    run_cli(main, fill("--data {raw} --out {done} --device cpu", w), capsys)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")} == before   # resumed: nothing decoded again


TRAIN_SR_CASES = [
    ("batch-size-0", "--data {missing} --out {tmp}/s --batch-size 0", r"argument --batch-size: must be .* >= 1"),
    ("frames-per-item-0", "--data {missing} --out {tmp}/s --frames-per-item 0", r"argument --frames-per-item"),
    ("preset-unknown", "--data {missing} --out {tmp}/s --preset huge", r"error: unknown SR preset 'huge'"),
    ("data-missing", "--data {missing} --out {tmp}/s", r"error: --data .*no-such-folder does not exist"),
    ("cache-of-another-size", "--data {cache} --out {tmp}/s --device cpu",
     r"error: .*cache holds 32x32 frames but this SR model learns 128x128; prepare the cache with --size 128"),
    ("resume-without-checkpoint", "--data {sr_cache} --out {tmp}/s --resume --device cpu",
     r"error: --resume: .*s/last\.pt does not exist"),
    ("raw-videos-under-torchrun", "--data {raw} --out {tmp}/s --device cpu --world-size-2",
     r"prepare it once first: python -m mmdiff.data.prepare --src .*raw --out .*raw-cache-128px-10fps-16000hz"),
]


@pytest.mark.parametrize("case, argv, message", TRAIN_SR_CASES, ids=[c[0] for c in TRAIN_SR_CASES])
def test_train_sr_bad_input(w, capsys, monkeypatch, case, argv, message):
    from mmdiff.train_sr import main

    if "--world-size-2" in argv:
        monkeypatch.setenv("WORLD_SIZE", "2")
        argv = argv.replace(" --world-size-2", "")
    check_one_line(*run_cli(main, fill(argv, w), capsys), message)


SAMPLE_CASES = [
    ("num-0", "--out {tmp}/o --num 0", r"argument --num: must be a whole number >= 1, got 0"),
    ("num-negative", "--out {tmp}/o --num -3", r"argument --num: must be a whole number >= 1, got -3"),
    ("batch-size-0", "--out {tmp}/o --batch-size 0", r"argument --batch-size: must be .* >= 1"),
    ("steps-0", "--out {tmp}/o --steps 0", r"argument --steps: must be .* >= 1"),
    ("seed-too-big", "--out {tmp}/o --seed 99999999999999999999", r"argument --seed: must be .* <= 9007199254740991"),
    ("eta-negative", "--out {tmp}/o --eta -1", r"argument --eta: must be >= 0"),
    ("ckpt-missing", "--out {tmp}/o --ckpt {tmp}/nope.pt --device cpu", r"error: checkpoint .*nope\.pt does not exist"),
    ("ckpt-not-a-checkpoint", "--out {tmp}/o --ckpt {junk} --device cpu", r"error: .*junk\.pt is not a checkpoint"),
    ("condition-missing", "--out {tmp}/o --condition-audio {tmp}/gone.wav --device cpu", r"error: gone\.wav: no such file"),
    ("condition-not-media", "--out {tmp}/o --condition-audio {notes} --device cpu",
     r"error: notes\.wav: not a readable audio/video file"),
    ("condition-audio-far-too-short", "--out {tmp}/o --condition-audio {click} --device cpu",
     r"error: click\.wav: 0\.05 s of audio is too short; the model needs 1\.60 s and pads at most down to 0\.10 s"),
    ("condition-start-past-the-end", "--out {tmp}/o --condition-audio {tone} --condition-start 5 --device cpu",
     r"error: tone\.wav: starting at 5 s leaves no audio \(3\.00 s long\)"),
    ("condition-start-alone", "--out {tmp}/o --condition-start 1", r"--condition-start needs --condition-video"),
    ("upscale-missing", "--out {tmp}/o --upscale {tmp}/sr.pt --device cpu", r"error: checkpoint .*sr\.pt does not exist"),
    ("device-unknown", "--out {tmp}/o --device tpu", r"error: --device tpu: expected auto, cpu, cuda or cuda:N"),
    ("trained-guidance-untrained-model", "--out {tmp}/o --ckpt {export} --condition-audio {tone} --guidance trained "
     "--device cpu", r"error: export\.pt was not trained with --cond-prob, so it has no trained conditioning"),
]


@pytest.mark.parametrize("case, argv, message", SAMPLE_CASES, ids=[c[0] for c in SAMPLE_CASES])
def test_sample_bad_input(w, capsys, case, argv, message):
    from mmdiff.sample import main

    check_one_line(*run_cli(main, fill(argv, w), capsys), message)
    assert not (w["tmp"] / "o" / "manifest.json").exists()          # nothing reported as done


def _damaged_copy(src: Path, out: Path, kind: str, which: list[int]) -> Path:
    with av.open(str(src)) as c:
        packets = [(p.pos, p.size) for p in c.demux() if p.size and p.stream.type == kind]
    data = bytearray(src.read_bytes())
    for i in which:
        pos, size = packets[i]
        data[pos:pos + min(size, 64)] = bytes(min(size, 64))
    out.write_bytes(bytes(data))
    return out


PREPARE_CASES = [  # case id, how the one source is made, exit status, what the summary says
    ("one-bad-audio-packet", "audio:3", 0, r"kept 1 sources.*decoded past damage in 1 kept sources.*"
                                          r"clip\.avi: skipped 1 of \d+ audio packets"),
    ("one-bad-video-packet", "video:4", 0, r"kept 1 sources.*clip\.avi: skipped 1 of 20 video packets"),
    ("a-third-of-audio-bad", "audio:" + ",".join(str(i) for i in range(2, 60, 3)), 0,
     r"kept 0 sources.*skipped 1 sources: unreadable.*clip\.avi: unreadable \(\d+ of \d+ audio packets are "
     r"undecodable"),
    ("megamind", "megamind", 0, r"kept 1 sources.*Megamind\.avi: skipped 1 of 352 audio packets"),
]


@pytest.mark.parametrize("case, make, status, summary", PREPARE_CASES, ids=[c[0] for c in PREPARE_CASES])
def test_prepare_damaged_media(w, tmp_path, capsys, case, make, status, summary):
    from mmdiff.data import prepare as prep

    src = tmp_path / "src"
    src.mkdir()
    if make == "megamind":
        assert MEGAMIND.is_file(), "install Debian's opencv-doc (apt-get install opencv-doc; .ci/run does)"
        shutil.copy(MEGAMIND, src / "Megamind.avi")
    else:
        kind, which = make.split(":")
        _damaged_copy(w["raw"] / "clip.avi", src / "clip.avi", kind, [int(i) for i in which.split(",")])
    got = prep.main(["--src", str(src), "--out", str(tmp_path / "cache"), "--preset", "tiny", "--quiet"])
    out = capsys.readouterr()
    assert got == status and "Traceback" not in out.err
    assert re.search(summary, out.out, re.S), out.out


APP_CASES = [  # case id, arguments, what the user sees (the last stderr line)
    ("device-unknown", "--device gpu0", r"^error: --device gpu0: expected auto, cpu, cuda or cuda:N"),
    ("max-batch-0", "--max-batch 0", r"^python app\.py: error: argument --max-batch: must be a whole number >= 1"),
    ("upload-mb-negative", "--max-upload-mb -5", r"argument --max-upload-mb: must be > 0, got -5"),
    ("ckpt-missing", "--ckpt {tmp}/nope.pt", r"^error: --ckpt .*nope\.pt: no such file"),
    ("ckpt-junk", "--ckpt {junk}", r"^error: .*junk\.pt is not a checkpoint \(not a file written by torch\.save\)"),
    ("workspace-missing", "--workspace {missing}", r"^error: --workspace .*no-such-folder: no such folder"),
    ("eval-cache-a-file", "--eval-cache-dir {junk}", r"^error: --eval-cache-dir .*junk\.pt: not a folder"),
]


@pytest.mark.parametrize("case, argv, message", APP_CASES, ids=[c[0] for c in APP_CASES])
def test_app_bad_flags_fail_at_start_in_one_line(w, case, argv, message):
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(root / "app.py"), "--port", "7999", *fill(argv, w)], cwd=root,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    check_one_line(proc.returncode, proc.stderr, message)
