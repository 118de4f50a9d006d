"""eval.study build: batch CSVs vs templates, HTML form fields vs analyze, layout, anonymity, preview."""
import json
from html.parser import HTMLParser

import pytest
from study_fixtures import make_clips_dir, read_batch_csv, write_clip

from eval.study.build import GOLD, REAL, StudyConfig, build_study
from eval.study.media import probe_clip
from eval.study.tasks import TASKS
from eval.study.template import fill_variables, template_variables

VOID = {"meta", "input", "br", "img", "link", "hr", "source", "col", "area", "base", "embed", "track", "wbr"}


class FormChecker(HTMLParser):
    """Checks that every non-void element is closed in order; collects form inputs."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.inputs, self.doctype, self.videos = [], [], [], False, []

    def handle_decl(self, decl):
        self.doctype = decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input":
            self.inputs.append(a)
        if tag == "video":
            self.videos.append(a)
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"unexpected </{tag}> at {self.getpos()}, open: {self.stack[-1:]}")
        else:
            self.stack.pop()


def check_html(text):
    p = FormChecker()
    p.feed(text)
    p.close()
    assert p.doctype, "missing <!DOCTYPE html>"
    assert not p.errors and not p.stack, (p.errors, p.stack)
    return p


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    real = make_clips_dir(root, "real", 5)
    ours = make_clips_dir(root, "ours", 5, ".avi", 10)
    base = make_clips_dir(root, "baseline_2stage", 4, ".mkv", 20)
    write_clip(ours / "zz_silent.mp4", audio=False)
    return {"real": real, "ours": ours, "base": base}


def _cfg(clips, kind, **kw):
    args = dict(kind=kind, systems={"ours": str(clips["ours"]), "baseline_2stage": str(clips["base"])},
                real=str(clips["real"]), num=4, base_url="https://media.example.org/study/media/",
                items_per_hit=5, seed=3, gold=1, max_hits_per_worker=7)
    args.update(kw)
    return StudyConfig(**args)


@pytest.fixture(scope="module")
def mos_study(clips, tmp_path_factory):
    out = tmp_path_factory.mktemp("mos")
    return build_study(_cfg(clips, "mos"), out, progress=None)


@pytest.fixture(scope="module")
def turing_study(clips, tmp_path_factory):
    out = tmp_path_factory.mktemp("turing")
    return build_study(_cfg(clips, "turing", gold=2), out, progress=None)


@pytest.mark.parametrize("which", ["mos_study", "turing_study"])
def test_batch_csv_matches_template_variables(which, request):
    res = request.getfixturevalue(which)
    for task, files in res.tasks.items():
        template = files["template"].read_text()
        header, rows = read_batch_csv(files["batch_csv"])
        assert header == template_variables(template)
        assert all(set(r) == set(header) and all(r.values()) for r in rows)
        fill_variables(template, rows[0])       # every variable has a value


@pytest.mark.parametrize("which", ["mos_study", "turing_study"])
def test_template_is_valid_html_with_the_fields_analyze_reads(which, request):
    res = request.getfixturevalue(which)
    key = json.loads((res.study_dir / "private" / "key.json").read_text())
    slots = key["slots_per_hit"]
    for task, files in res.tasks.items():
        t = TASKS[task]
        p = check_html(files["template"].read_text())
        radios = {}
        for a in p.inputs:
            if a.get("type") == "radio":
                radios.setdefault(a["name"], []).append(a["value"])
                assert "required" in a
        assert radios == {f"{t.field}_{i}": list(t.choices) for i in range(1, slots + 1)}
        hidden = {a["name"]: a["value"] for a in p.inputs if a.get("type") == "hidden"}
        assert hidden["study_task"] == "${study_task}"
        for i in range(1, slots + 1):
            assert hidden[f"item_id_{i}"] == f"${{item_id_{i}}}" and hidden[f"played_{i}"] == "0"
        assert [v["src"] for v in p.videos] == [f"${{video_url_{i}}}" for i in range(1, slots + 1)]
        text = files["template"].read_text()
        assert "crowd-form" in text and "crowd-html-elements.js" in text


def test_mos_template_shows_table_a2_rubric(mos_study):
    vq = mos_study.tasks["mos_vq"]["template"].read_text()
    av = mos_study.tasks["mos_av"]["template"].read_text()
    assert "Pure noise, completely unrecognizable content." in vq
    assert "The video is natural, but can be recognized as generated content." in vq
    assert "Video and audio are basically matched, but the detail in correspondence is lacking." in av
    assert "Some clips are checks" in vq and "at most 7 of these HITs" in vq


def test_every_clip_once_per_task_with_gold_in_every_hit(mos_study, turing_study):
    for res, gold in ((mos_study, 1), (turing_study, 2)):
        key = json.loads((res.study_dir / "private" / "key.json").read_text())
        study_ids = {i for i, e in key["items"].items() if e["system"] != GOLD}
        assert len(study_ids) == 12 and res.num_items == 12      # 4 per system + 4 real
        assert {e["system"] for e in key["items"].values()} == {REAL, "ours", "baseline_2stage", GOLD}
        for task, files in res.tasks.items():
            _, rows = read_batch_csv(files["batch_csv"])
            placed = []
            for r in rows:
                ids = [r[f"item_id_{i}"] for i in range(1, key["slots_per_hit"] + 1)]
                assert len(set(ids)) == len(ids)
                n_gold = sum(key["items"][i]["system"] == GOLD for i in ids)
                assert n_gold >= gold
                for i, item in enumerate(ids, 1):
                    assert r[f"video_url_{i}"] == f"https://media.example.org/study/media/{item}.mp4"
                    gold_entry = key["items"][item]["gold"]
                    if key["items"][item]["system"] == GOLD:
                        assert gold_entry[task] == list(TASKS[task].gold_expected)
                placed += [i for i in ids if i in study_ids]
            assert sorted(placed) == sorted(study_ids)           # each clip exactly once per task
            assert key["hits"][task] == [[r[f"item_id_{i}"] for i in range(1, key["slots_per_hit"] + 1)]
                                         for r in rows]


def test_hit_order_differs_between_hits_and_tasks(mos_study):
    orders = []
    for task in ("mos_vq", "mos_aq", "mos_av"):
        _, rows = read_batch_csv(mos_study.tasks[task]["batch_csv"])
        orders.append([r["item_id_1"] for r in rows])
    assert len({tuple(o) for o in orders}) > 1


def test_layout_private_key_outside_media_and_names_anonymous(mos_study, clips):
    d = mos_study.study_dir
    media = sorted(p.name for p in (d / "media").iterdir())
    key = json.loads((d / "private" / "key.json").read_text())
    assert media == sorted(f"{i}.mp4" for i in key["items"])
    public = [p for p in d.rglob("*") if p.is_file() and "private" not in p.parts]
    for p in public:
        data = p.read_bytes()
        for secret in (b"ours", b"baseline_2stage", str(clips["real"]).encode(), b"clip00"):
            assert secret not in data, f"{secret!r} leaks into {p}"
    for m in (d / "media").iterdir():
        info = probe_clip(m)
        assert (info.video_codec, info.audio_codec, info.pix_fmt) == ("h264", "aac", "yuv420p")
    sources = {e["source"] for e in key["items"].values() if e["system"] == "ours"}
    assert not any(s.endswith("zz_silent.mp4") for s in sources)


def test_rebuild_is_stable_and_resumes(clips, mos_study, tmp_path):
    again = build_study(_cfg(clips, "mos"), mos_study.study_dir, progress=None)   # resume in place
    report = json.loads((mos_study.study_dir / "private" / "build_report.json").read_text())
    assert report["media"]["existing"] == 12 + again.num_gold
    fresh = build_study(_cfg(clips, "mos"), tmp_path / "fresh", progress=None)
    for task in again.tasks:
        assert again.tasks[task]["batch_csv"].read_text() == fresh.tasks[task]["batch_csv"].read_text()
    other = build_study(_cfg(clips, "mos", seed=4), tmp_path / "other", progress=None)
    assert other.tasks["mos_vq"]["batch_csv"].read_text() != fresh.tasks["mos_vq"]["batch_csv"].read_text()


def test_preview_renders_real_values_escaped_and_offline(mos_study):
    page = mos_study.tasks["mos_aq"]["preview"].read_text()
    p = check_html(page)
    _, rows = read_batch_csv(mos_study.tasks["mos_aq"]["batch_csv"])
    for i, v in enumerate(p.videos, 1):
        assert v["src"] == f"../media/{rows[0][f'item_id_{i}']}.mp4"
        assert (mos_study.study_dir / "preview" / v["src"]).resolve().is_file()
    assert "${" not in page and "crowd-html-elements.js" not in page and "Local preview" in page


def test_fill_variables_escapes_and_names_missing():
    t = '<p title="${a}">${a}</p>'
    esc = "&lt;script&gt;&quot;x&quot;&amp;&lt;/script&gt;"
    assert fill_variables(t, {"a": '<script>"x"&</script>'}) == f'<p title="{esc}">{esc}</p>'

    with pytest.raises(KeyError, match=r"\$\{a\}"):
        fill_variables(t, {})


def test_bad_configs_are_refused(clips, tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        build_study(_cfg(clips, "mos", systems={"real": str(clips["ours"])}), tmp_path, progress=None)
    with pytest.raises(ValueError, match="base-url"):
        build_study(_cfg(clips, "mos", base_url="media/"), tmp_path, progress=None)
    with pytest.raises(ValueError, match="'mos' or 'turing'"):
        build_study(_cfg(clips, "ab"), tmp_path, progress=None)
    with pytest.raises(ValueError, match=r"asked for 6 clips but .* has only 5 usable"):
        build_study(_cfg(clips, "mos", num=6), tmp_path, progress=None)


def test_cli_build(clips, tmp_path, capsys):
    from eval.study.__main__ import main
    args = ["build", "--kind", "turing", "--system", f"ours={clips['ours']}", "--real", str(clips["real"]),
            "--num", "2", "--base-url", "https://h.example/m", "--out", str(tmp_path / "s"), "--items-per-hit", "3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "4 clips" in out and (tmp_path / "s" / "mturk" / "turing" / "batch.csv").is_file()
    assert main(args + ["--system", f"ours={clips['base']}"]) == 2
    assert "distinct" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["build", "--kind", "mos", "--system", "no-equals-sign", "--real", "r", "--num", "1",
              "--base-url", "https://h", "--out", "o"])


def test_alignment_gold_is_unrecognisable_in_both_streams():
    """The A-V attention check must have one fair answer: rubric 1-2 ("cannot be recognised") fits only a
    clip whose picture and sound are both noise; real frames with noise audio fairly earn a 3."""
    from eval.study.tasks import ALIGNMENT_RUBRIC, GOLD_BOTH_NOISE, TASKS

    task = TASKS["mos_av"]
    assert task.gold_variant == GOLD_BOTH_NOISE
    assert all("recognized but" not in ALIGNMENT_RUBRIC[int(a)] for a in task.gold_expected)


def test_public_zip_leaves_out_the_run_marker_and_lock(mos_study, tmp_path):
    import zipfile

    from eval.study.bundle import zip_study
    from mmdiff.outdir import LOCK_NAME, MARKER_NAME

    assert (mos_study.study_dir / MARKER_NAME).is_file()          # says which command, host and paths built it
    (mos_study.study_dir / LOCK_NAME).write_text("{}")
    half = mos_study.study_dir / "media" / ".0123456789ab.mp4.k3j9x2qa.mp4"    # a killed build's temp file
    half.write_bytes(b"half a clip")
    try:
        with zipfile.ZipFile(zip_study(mos_study.study_dir, tmp_path / "s.zip")) as z:
            assert not [n for n in z.namelist() if ".mmdiff-" in n or n.rsplit("/", 1)[-1].startswith(".")]
    finally:
        (mos_study.study_dir / LOCK_NAME).unlink()
        half.unlink()


def _x264_settings(path) -> bytes:
    """The encoder's options string that libx264 writes into the stream (SEI), e.g. b'... crf=18.0 ...'."""
    data = path.read_bytes()
    start = data.index(b"x264 - core")
    return data[start:data.index(b"\x00", start)]


def test_every_clip_is_shown_in_the_generated_clips_format(tmp_path):
    """Real clips of another size, frame rate, length and audio rate (and gold clips made from them) come out as the
    generated ones: 32x32, 10 fps, 0.8 s, 16 kHz mono, one encoder setting; a real clip too short is skipped."""
    real = tmp_path / "real"
    real.mkdir()
    for i in range(3):
        write_clip(real / f"cam{i}.mp4", seed=i, size=64, fps=25, frames=50, seconds=2.0, rate=44100)
    write_clip(real / "cam9_short.mp4", seed=9, size=64, fps=25, frames=5, seconds=0.2, rate=44100)
    ours = make_clips_dir(tmp_path, "ours", 3, ".mp4", 10)            # 32x32, 10 fps, 0.8 s, 16 kHz mono
    cfg = StudyConfig(kind="turing", systems={"ours": str(ours)}, real=str(real), num=3,
                      base_url="https://media.example.org/s/media/", items_per_hit=3, seed=0, gold=1)
    res = build_study(cfg, tmp_path / "study", progress=None)
    key = json.loads((res.study_dir / "private" / "key.json").read_text())
    assert key["media_format"] == {"width": 32, "height": 32, "fps": 10.0, "duration": pytest.approx(0.8, abs=0.05),
                                   "audio_rate": 16000, "channels": 1}
    assert not any("cam9_short" in e["source"] for e in key["items"].values())
    assert any("cam9_short.mp4: 0.2" in s and "shorter than the study's 0.8" in s for s in res.skipped)
    systems = {e["system"] for e in key["items"].values()}
    assert systems == {"ours", REAL, GOLD}
    settings = set()
    for i in key["items"]:
        info = probe_clip(res.study_dir / "media" / f"{i}.mp4")
        assert (info.width, info.height, info.fps, info.audio_rate, info.channels) == (32, 32, 10.0, 16000, 1), i
        assert abs(info.duration - 0.8) < 0.1, (i, info.duration)
        settings.add(_x264_settings(res.study_dir / "media" / f"{i}.mp4"))
    assert len(settings) == 1                                           # one encoder setting for every clip
    report = json.loads((res.study_dir / "private" / "build_report.json").read_text())
    note = report["warnings"][0]
    assert note.startswith("every clip is shown as 32x32 at 10 fps, 0.80 s, 16000 Hz mono")
    assert "size 64x64" in note and "frame rate 25 fps" in note and "audio rate 44100 Hz" in note


def test_keep_formats_shows_clips_as_they_are_and_warns(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    for i in range(2):
        write_clip(real / f"cam{i}.mp4", seed=i, size=64, fps=25, frames=50, seconds=2.0, rate=44100)
    ours = make_clips_dir(tmp_path, "ours", 2, ".mp4", 10)
    cfg = StudyConfig(kind="turing", systems={"ours": str(ours)}, real=str(real), num=2,
                      base_url="https://media.example.org/s/media/", items_per_hit=2, seed=0, gold=0, keep_formats=True)
    res = build_study(cfg, tmp_path / "study", progress=None)
    key = json.loads((res.study_dir / "private" / "key.json").read_text())
    assert key["media_format"] is None
    sizes = {probe_clip(res.study_dir / "media" / f"{i}.mp4").width for i in key["items"]}
    assert sizes == {32, 64}
    assert any("can tell a worker which clips are real" in w for w in res.warnings)



def test_a_study_built_before_the_one_format_change_resumes_with_keep_formats(tmp_path):
    """Its key.json has no media_format and no keep_formats: a rerun with --keep-formats resumes it (same key, media
    kept); without, a message says so instead of 'other settings' (whose advice, --overwrite, would drop its key)."""
    real = make_clips_dir(tmp_path, "real", 2)
    ours = make_clips_dir(tmp_path, "ours", 2, ".mp4", 10)
    cfg = StudyConfig(kind="turing", systems={"ours": str(ours)}, real=str(real), num=2,
                      base_url="https://media.example.org/s/media/", items_per_hit=2, seed=0, gold=0, keep_formats=True)
    res = build_study(cfg, tmp_path / "study", progress=None)
    key_path = res.study_dir / "private" / "key.json"
    old = json.loads(key_path.read_text())
    del old["media_format"], old["config"]["keep_formats"]                # as written before the change
    key_path.write_text(json.dumps(old))
    from dataclasses import replace

    with pytest.raises(ValueError, match=r"built with each clip in its own format .* rerun with --keep-formats"):
        build_study(replace(cfg, keep_formats=False), tmp_path / "study", progress=None)
    again = build_study(cfg, tmp_path / "study", progress=None)
    assert json.loads(key_path.read_text())["items"] == old["items"] and again.num_items == res.num_items



def test_a_first_build_interrupted_while_exporting_media_resumes(tmp_path, monkeypatch):
    """The key is written before the media, so a rerun of the same command after Ctrl-C (or a kill) during the
    first build continues it, keeping the clips already exported, instead of refusing a non-empty folder."""
    import eval.study.build as build

    real = make_clips_dir(tmp_path, "real", 2)
    ours = make_clips_dir(tmp_path, "ours", 2, ".mp4", 10)
    cfg = StudyConfig(kind="turing", systems={"ours": str(ours)}, real=str(real), num=2,
                      base_url="https://media.example.org/s/media/", items_per_hit=2, seed=0, gold=1)
    real_export, calls = build.export_clip, []

    def export_then_stop(info, dst, fmt=None):
        if calls:
            raise KeyboardInterrupt
        calls.append(dst)
        return real_export(info, dst, fmt)

    monkeypatch.setattr(build, "export_clip", export_then_stop)
    with pytest.raises(KeyboardInterrupt):
        build_study(cfg, tmp_path / "study", progress=None)
    monkeypatch.setattr(build, "export_clip", real_export)
    first = calls[0].read_bytes()
    res = build_study(cfg, tmp_path / "study", progress=None)
    report = json.loads((res.study_dir / "private" / "build_report.json").read_text())
    assert report["media"]["existing"] == 1 and calls[0].read_bytes() == first
    assert len(list((res.study_dir / "media").glob("*.mp4"))) == res.num_items + res.num_gold
