"""Publish a built study to Mechanical Turk through boto3 (sandbox unless `live=True`).

One HIT type per task (`create_hit_type`, with the qualification requirements below) and one HIT
per batch CSV row (`create_hit_with_hit_type`, the template filled with that row, html-escaped, in
an HTMLQuestion). MaxAssignments = votes per clip, and MTurk never gives one HIT twice to a worker,
so every clip gets that many distinct workers. Created HIT ids are saved to
private/published_<sandbox|live>.json after each HIT, so an interrupted run resumes without
creating duplicates (each call also carries a UniqueRequestToken).

Per-worker limits: MTurk has no "at most N HITs per worker" switch. The recommended cap is written
to mturk/<task>/hit_settings.json and stated in the instructions; `analyze` counts only a worker's
first N assignments per task. Worker quality: approval rate >= 95 % and >= 500 approved HITs on
live (none in the sandbox, where test workers have no history).

Results of API-published HITs: download them as batch CSVs from the requester site, or use the
same assignments through `list_assignments_for_hit` (not wrapped here).
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .files import write_json_atomic
from .key import load_key
from .tasks import TASKS
from .template import fill_variables

SANDBOX_ENDPOINT = "https://mturk-requester-sandbox.us-east-1.amazonaws.com"
LIVE_ENDPOINT = "https://mturk-requester.us-east-1.amazonaws.com"
PREVIEW_URL = {True: "https://workersandbox.mturk.com/mturk/preview?groupId=",
               False: "https://worker.mturk.com/mturk/preview?groupId="}
HTML_QUESTION_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/HTMLQuestion.xsd"
APPROVAL_RATE_QUAL = "000000000000000000L0"     # system qualification: PercentAssignmentsApproved
APPROVED_HITS_QUAL = "00000000000000000040"     # system qualification: NumberHITsApproved
LOCALE_QUAL = "00000000000000000071"            # system qualification: Locale

NO_CREDENTIALS_HELP = """\
Cannot reach Mechanical Turk: {error}
To publish:
  1. Create a requester account (https://requester.mturk.com, and https://requestersandbox.mturk.com
     for the sandbox) and link it to an AWS account.
  2. Give boto3 credentials of an IAM user allowed to use MTurk (AmazonMechanicalTurkFullAccess):
     `aws configure`, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment.
  3. Serve STUDY_DIR/media/ at the --base-url the study was built with (https).
  4. Run `python -m eval.study publish --study STUDY_DIR` (sandbox first), then add --live.
Without API access you can also publish by hand: paste mturk/<task>/template.html into a new
project's layout on the requester site and upload mturk/<task>/batch.csv as its batch."""


@dataclass(frozen=True)
class HitSettings:
    reward: str = "0.20"                          # USD per assignment
    assignment_duration_s: int = 30 * 60
    lifetime_s: int = 7 * 24 * 3600
    auto_approval_delay_s: int = 3 * 24 * 3600    # time to review and reject before auto-approval
    min_approval_rate: int = 95
    min_approved_hits: int = 500
    locales: tuple[str, ...] = ()                 # ISO country codes, e.g. ("US", "GB"); empty: any
    keywords: str = "video, audio, rating, perception, survey"


def check_reward(text: str) -> str:
    """The reward as MTurk's API takes it ("0.20": US dollars, at most 2 decimals, at least $0.01); ValueError else."""
    t = str(text).strip()
    if not re.fullmatch(r"\d{1,4}(\.\d{1,2})?|\.\d{1,2}", t) or float(t) < 0.01:
        raise ValueError(f"--reward is US dollars per assignment with at most 2 decimals and at least 0.01, "
                         f"such as 0.20 (no $ sign), got {text!r}")
    return f"{float(t):.2f}"


def check_locales(codes: list[str] | None) -> tuple[str, ...]:
    """ISO 3166 alpha-2 country codes (US, GB, ...) as MTurk's Locale qualification takes them."""
    bad = [c for c in codes or () if not re.fullmatch(r"[A-Z]{2}", c)]
    if bad:
        raise ValueError(f"--locale takes a two-letter country code such as US or GB, got {', '.join(map(repr, bad))}")
    return tuple(codes or ())


def check_tasks(tasks: list[str] | None, key: dict) -> list[str]:
    """The tasks to publish: the study's own, or the given ones if each is a task of this study."""
    if not tasks:
        return list(key["tasks"])
    unknown = [t for t in tasks if t not in key["tasks"]]
    if unknown:
        raise ValueError(f"--task {', '.join(unknown)} is not a task of this study; its tasks are "
                         f"{', '.join(key['tasks'])}")
    return list(dict.fromkeys(tasks))


def qualification_requirements(s: HitSettings, sandbox: bool) -> list[dict]:
    """Recommended worker requirements (none in the sandbox, where workers have no history)."""
    if sandbox:
        return []
    guard = {"ActionsGuarded": "DiscoverPreviewAndAccept"}
    reqs = [{"QualificationTypeId": APPROVAL_RATE_QUAL, "Comparator": "GreaterThanOrEqualTo",
             "IntegerValues": [s.min_approval_rate], **guard},
            {"QualificationTypeId": APPROVED_HITS_QUAL, "Comparator": "GreaterThanOrEqualTo",
             "IntegerValues": [s.min_approved_hits], **guard}]
    if s.locales:
        reqs.append({"QualificationTypeId": LOCALE_QUAL, "Comparator": "In",
                     "LocaleValues": [{"Country": c} for c in s.locales], **guard})
    return reqs


def hit_type_params(task: str, s: HitSettings, sandbox: bool) -> dict:
    """Arguments of `create_hit_type` for one task."""
    t = TASKS[task]
    return {"Title": t.title, "Description": t.question + " Watch short clips with sound and answer per clip.",
            "Keywords": s.keywords, "Reward": s.reward,
            "AssignmentDurationInSeconds": s.assignment_duration_s,
            "AutoApprovalDelayInSeconds": s.auto_approval_delay_s,
            "QualificationRequirements": qualification_requirements(s, sandbox)}


def html_question(page: str) -> str:
    """The HTMLQuestion XML that carries a complete HTML page."""
    if "]]>" in page:
        raise ValueError("the HIT page contains ']]>' and cannot be wrapped in CDATA")
    return (f'<HTMLQuestion xmlns="{HTML_QUESTION_NS}">\n<HTMLContent><![CDATA[\n{page}\n]]></HTMLContent>\n'
            "<FrameHeight>0</FrameHeight>\n</HTMLQuestion>")


def read_batch(study_dir: Path, task: str) -> tuple[str, list[dict[str, str]]]:
    d = Path(study_dir) / "mturk" / task
    with open(d / "batch.csv", newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    return (d / "template.html").read_text(encoding="utf-8"), rows


def write_hit_settings(study_dir: Path, task: str, s: HitSettings, votes: int, max_hits_per_worker: int,
                       sandbox: bool) -> Path:
    """mturk/<task>/hit_settings.json: what to enter on the requester site when publishing by hand."""
    return write_json_atomic(Path(study_dir) / "mturk" / task / "hit_settings.json", {
        **hit_type_params(task, s, sandbox=False), "MaxAssignments": votes, "LifetimeInSeconds": s.lifetime_s,
        "RecommendedMaxHITsPerWorker": max_hits_per_worker,
        "note": "QualificationRequirements apply on live; analyze counts only the first "
                "RecommendedMaxHITsPerWorker assignments of a worker per task."})


def make_client(sandbox: bool = True, region: str = "us-east-1"):
    """boto3 MTurk client for the sandbox (default) or the live marketplace."""
    import boto3

    return boto3.client("mturk", region_name=region, endpoint_url=SANDBOX_ENDPOINT if sandbox else LIVE_ENDPOINT)


def publish_study(study_dir: str | Path, client, settings: HitSettings | None = None, sandbox: bool = True,
                  tasks: list[str] | None = None, progress: Callable[[str], None] | None = print) -> dict:
    """Create the HIT types and HITs of a built study; returns the published record (see module doc).

    Raises botocore's NoCredentialsError / EndpointConnectionError / ClientError unchanged; the CLI
    turns them into instructions (NO_CREDENTIALS_HELP).
    """
    study_dir = Path(study_dir)
    settings = settings or HitSettings()
    settings = dataclasses.replace(settings, reward=check_reward(settings.reward))
    say = progress or (lambda s: None)
    key = load_key(study_dir)
    tasks = check_tasks(tasks, key)
    mode = "sandbox" if sandbox else "live"
    record_path = study_dir / "private" / f"published_{mode}.json"
    record = _load_record(record_path)
    balance = client.get_account_balance().get("AvailableBalance")
    say(f"MTurk {mode}: available balance ${balance}")
    for task in tasks:
        template, rows = read_batch(study_dir, task)
        write_hit_settings(study_dir, task, settings, key["config"]["votes"],
                           key["config"]["max_hits_per_worker"], sandbox)
        rec = record.setdefault(task, {"hit_type_id": None, "hits": {}})
        if rec["hit_type_id"] is None:
            rec["hit_type_id"] = client.create_hit_type(**hit_type_params(task, settings, sandbox))["HITTypeId"]
            write_json_atomic(record_path, record)
        for i, row in enumerate(rows):
            if str(i) in rec["hits"]:
                continue
            token = hashlib.sha256(f"{study_dir.resolve()}|{mode}|{task}|{i}|{key['config']['seed']}"
                                   .encode()).hexdigest()[:64]
            hit = client.create_hit_with_hit_type(
                HITTypeId=rec["hit_type_id"], MaxAssignments=key["config"]["votes"],
                LifetimeInSeconds=settings.lifetime_s, Question=html_question(fill_variables(template, row)),
                RequesterAnnotation=f"{task}:{i}", UniqueRequestToken=token)["HIT"]
            rec["hits"][str(i)] = hit["HITId"]
            rec["hit_group_id"] = hit.get("HITGroupId") or rec.get("hit_group_id")
            write_json_atomic(record_path, record)
        group = rec.get("hit_group_id")
        say(f"{task}: {len(rec['hits'])}/{len(rows)} HITs published"
            + (f"; workers see them at {PREVIEW_URL[sandbox]}{group}" if group else ""))
    return record


def _load_record(path: Path) -> dict:
    import json

    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
