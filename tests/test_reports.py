"""Reports: templates, the draft and its revisions, every state change, countersign, co-sign, addenda, FHIR and
critical findings — through the JSON API, as readers, consultants and stations use it."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from web_client import Browser
from alliance import CT, ECG, Alliance, assert_problem
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

import reports.jobs
import viewer.jobs
from conftest import require
from pacs_node.node import storage_for
from reading_queue.notify import Notification, WebhookDelivery
from reading_queue.tasks import ReadingTask, TaskEvent
from reports.models import CriticalNotice, Report, ReportAddendum, ReportSignature
from reports.templates import BUILT_IN, TemplateError, choose, load_file, load_templates
from telerad import clock
from telerad.audit import AuditEvent
from telerad.config import Config
from telerad.events import OutboxEvent
from telerad.users import User
from telerad.web import create_app
from viewer.ecg_measurements import computed_for

FHIR = "application/fhir+json"


# --- helpers ---------------------------------------------------------------------------------------------------


def report_path(study_uid: str, tail: str = "") -> str:
    return f"/studies/{study_uid}/report{tail}"


def put(alliance: Alliance, who: str, study_uid: str, body: dict[str, Any]) -> Any:
    return alliance.client.put(f"/api/v1{report_path(study_uid)}", json=body, headers=alliance._auth(who))


def claimed(alliance: Alliance, source: Path, ae_title: str, reader: str, **changes: object) -> str:
    """A complete study whose reading task ``reader`` holds; returns the study UID."""
    task = alliance.study(source, ae_title, **changes)
    answer = alliance.post(f"/tasks/{task.id}/claim", reader)
    assert answer.status_code == 200, answer.json
    return task.study_uid


def drafted(alliance: Alliance, reader: str, study_uid: str, **changes: Any) -> dict[str, Any]:
    """Save the proposed draft (with ``changes``) as ``reader``; returns the saved report."""
    answer = put(alliance, reader, study_uid, {"revision": 0, **changes})
    assert answer.status_code == 200, answer.json
    return answer.json


def signed_events(sessions: sessionmaker, study_uid: str) -> list[OutboxEvent]:
    with sessions() as session:
        return [e for e in session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "report.signed")
                                           .order_by(OutboxEvent.id)) if e.payload["study_uid"] == study_uid]


def timeline(alliance: Alliance, study_uid: str) -> list[tuple[str, str]]:
    return [(e["kind"], e["actor"]) for e in alliance.get(f"/studies/{study_uid}", "supervisor").json["timeline"]]


def notices(sessions: sessionmaker, user: str, kind: str) -> list[Notification]:
    with sessions() as session:
        user_id = session.scalar(select(User.id).where(User.name == user))
        return list(session.scalars(select(Notification).where(Notification.user_id == user_id,
                                                               Notification.kind == kind)))


def variant(config: Config, section: str, **changes: Any) -> Config:
    """``config`` with ``changes`` to one of its sections."""
    return config.model_copy(update={section: getattr(config, section).model_copy(update=changes)})


@pytest.fixture
def countersigning(config: Config, sessions: sessionmaker, tmp_path: Path) -> Iterator[Alliance]:
    """The demo alliance where the county centre's junior readers' reports need a countersignature."""
    yield Alliance(variant(config, "reports", countersign_sites=("CNTY",)), sessions, tmp_path / "files")
    clock.set_source(None)


@pytest.fixture
def gatewayed(config: Config, sessions: sessionmaker, tmp_path: Path) -> Iterator[Alliance]:
    """The demo alliance with an SMS/WeChat gateway for notices (``reading.webhook_url``)."""
    yield Alliance(variant(config, "reading", webhook_url="http://127.0.0.1:9/notices"), sessions, tmp_path / "files")
    clock.set_source(None)


# --- templates -------------------------------------------------------------------------------------------------


def test_templates_load_from_data_files_and_a_broken_one_is_named_by_file_and_key(tmp_path: Path) -> None:
    templates = load_templates()
    assert set(templates) == {"ct-head", "ct-chest", "ct-abdomen", "xr-chest", "xr-limb", "ecg-12lead"}
    for template in templates.values():
        assert template.name and template.name_en and template.loinc.code and template.impression
        assert all(field.label and field.label_en for field in template.fields)
        assert template.phrases, f"{template.id} has no reusable phrases"
    ecg = templates["ecg-12lead"]
    assert {f.prefill for f in ecg.fields if f.prefill} == {"heart_rate", "pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms",
                                                            "qrs_axis"}
    assert ecg.sections.impression.label_en == "Conclusion"

    assert choose(templates, "CT", set(), ["e+1"]).id == "ct-head"  # nothing says: the CT default
    assert choose(templates, "CT", {"CHEST"}, []).id == "ct-chest"
    assert choose(templates, "CT", set(), ["上腹部CT平扫"]).id == "ct-abdomen"
    assert choose(templates, "DX", {"KNEE"}, []).id == "xr-limb"
    assert choose(templates, "CR", set(), ["胸部正位"]).id == "xr-chest"
    assert choose(templates, "ECG", set(), []).id == "ecg-12lead"
    assert choose(templates, "MR", set(), []) is None

    extra = tmp_path / "templates"
    extra.mkdir()
    source = (BUILT_IN / "xr-chest.yaml").read_text("utf-8")
    (extra / "chest.yaml").write_text(source.replace("name_en: Chest X-ray", "name_en: Chest radiograph"), "utf-8")
    (extra / "mr-knee.yaml").write_text(
        "id: mr-knee\nname: 膝关节MRI\nname_en: MR knee\nmodalities: [MR]\nloinc: {code: 24597-1, display: MR Knee}\n"
        "fields: [{id: meniscus, type: choice, label: 半月板, label_en: Meniscus, options: [{value: intact, "
        "label: 完整, label_en: Intact}]}]\nimpression: 膝关节MRI未见明显异常。\n", "utf-8")
    added = load_templates(extra)
    assert added["xr-chest"].name_en == "Chest radiograph" and added["mr-knee"].fields[0].id == "meniscus"
    assert choose(added, "MR", set(), []).id == "mr-knee"

    broken = tmp_path / "broken.yaml"
    for text, key in (
        (source.replace("    type: choice\n    label: 肺野", "    type: choice\n    colour: red\n    label: 肺野"),
         "fields.1.colour: unknown key"),
        (source.replace("  - id: heart\n    type: choice", "  - id: heart\n    type: choice\n    unit: mm"),
         "fields.2: unit: only a number field has a unit"),
        (source.replace("  - id: projection\n    type: choice", "  - id: projection\n    type: number"),
         "fields.0: options: only a choice field has options, not a number field"),
        (source.replace("loinc: {code: 36643-5, display: XR Chest 2 Views}\n", ""), "loinc: required key is missing"),
        (source.replace("default: pa\n", "default: lateral\n"), "fields.0: default: 'lateral' is not one of the options"),
        ("id: x\nname: [unclosed\n", "not valid YAML"),
    ):
        broken.write_text(text, "utf-8")
        with pytest.raises(TemplateError) as caught:
            load_file(broken)
        assert str(broken) in str(caught.value) and key in str(caught.value), str(caught.value)
    (extra / "twin.yaml").write_text(source, "utf-8")
    load_templates.cache_clear()  # loaded once per process and folder
    with pytest.raises(TemplateError, match="twin.yaml: id: 'xr-chest' is already the id of .*chest.yaml"):
        load_templates(extra)


def test_templates_are_listed_for_the_editor_with_the_administrators_own(alliance: Alliance, tmp_path: Path) -> None:
    answer = alliance.get("/report-templates", "reader-ct")
    assert answer.status_code == 200
    ids = [template["id"] for template in answer.json["templates"]]
    assert sorted(ids) == ["ct-abdomen", "ct-chest", "ct-head", "ecg-12lead", "xr-chest", "xr-limb"]
    categories = {c["code"]: c for c in answer.json["critical_categories"]}
    assert categories["intracranial_haemorrhage"]["name"] == "颅内出血"
    assert_problem(alliance.client.get("/api/v1/report-templates"), 401)

    folder = tmp_path / "site-templates"
    folder.mkdir()
    (folder / "ct-spine.yaml").write_text(
        (BUILT_IN / "ct-head.yaml").read_text("utf-8").replace("id: ct-head", "id: ct-spine")
        .replace("default_for: [CT]", "default_for: []"), "utf-8")
    app = create_app(variant(alliance.config, "reports", templates_dir=folder))
    token = {"Authorization": f"Bearer {alliance.token('reader-ct')}"}
    listed = app.test_client().get("/api/v1/report-templates", headers=token).json["templates"]
    assert "ct-spine" in [template["id"] for template in listed]
    (folder / "broken.yaml").write_text("id: broken\n", "utf-8")
    load_templates.cache_clear()
    with pytest.raises(TemplateError, match=r"broken.yaml: name: required key is missing"):
        create_app(variant(alliance.config, "reports", templates_dir=folder))  # a broken file stops start-up


# --- the draft -------------------------------------------------------------------------------------------------


def test_the_ecg_draft_is_prefilled_from_telerads_measurements(alliance: Alliance) -> None:
    uid = claimed(alliance, ECG, "XH_ECG", "reader-ecg")
    viewer.jobs.configure(alliance.config, alliance.sessions)
    viewer.jobs.on_study(1, "study.complete", {"study_uid": uid})
    with alliance.sessions() as session:
        assert session.scalar(select(Report.id)) is None  # nothing saved by measuring or looking
    proposed = alliance.get(report_path(uid), "reader-ecg").json
    assert proposed["saved"] is False and proposed["revision"] == 0 and proposed["state"] == "draft"
    assert proposed["template_id"] == "ecg-12lead" and proposed["template"]["name"] == "十二导联心电图"
    measured = proposed["measurements"]
    assert measured["source"] == "telerad"
    with alliance.sessions() as session:
        row = computed_for(session, measured["sop_instance_uid"])
    expected = {"heart_rate": row.heart_rate, "pr": row.pr_ms, "qrs": row.qrs_ms, "qt": row.qt_ms,
                "qtc": row.qtc_bazett_ms, "qrs_axis": row.qrs_axis}
    assert {name: proposed["fields"][name] for name in expected} == {
        name: None if value is None else round(value) for name, value in expected.items()}
    assert proposed["fields"]["heart_rate"] is not None and proposed["fields"]["rhythm"] == "sinus"
    assert proposed["impression"] == "窦性心律；正常心电图。"
    assert proposed["may"]["edit"] is True and proposed["may"]["sign"] is False  # saved first, then signed

    with alliance.sessions() as session, session.begin():  # had Telerad not measured it, the device's values
        row = computed_for(session, measured["sop_instance_uid"])
        device, row.error = dict(row.device), "MeasurementError: too noisy"
    from_device = alliance.get(report_path(uid), "reader-ecg").json
    assert from_device["measurements"]["source"] == "device"
    assert {name: from_device["fields"][name] for name in ("heart_rate", "pr", "qrs", "qt", "qtc", "qrs_axis")} == {
        "heart_rate": round(60000 / device["values"]["rr"]["value"]), "pr": 161, "qrs": 75, "qt": 368, "qtc": 370,
        "qrs_axis": 52}
    with alliance.sessions() as session, session.begin():
        computed_for(session, measured["sop_instance_uid"]).error = None

    saved = drafted(alliance, "reader-ecg", uid, fields={"rhythm": "sinus_bradycardia"})
    assert saved["saved"] is True and saved["revision"] == 1
    assert saved["fields"]["heart_rate"] == proposed["fields"]["heart_rate"]
    assert saved["fields"]["rhythm"] == "sinus_bradycardia"

    chest = claimed(alliance, CT, "DG_CT", "reader-ct", BodyPartExamined="CHEST")
    assert alliance.get(report_path(chest), "reader-ct").json["template_id"] == "ct-chest"


def test_autosave_with_revisions_and_only_the_holder_writes(alliance: Alliance) -> None:
    uid = claimed(alliance, CT, "DG_CT", "reader-ct")
    assert_problem(alliance.get(report_path(uid), "dongguan"), 404)  # a station never sees a draft
    assert_problem(alliance.get(report_path(uid), "xihe"), 404)
    for who, status in (("reader-ct2", 404), ("consultant", 404), ("supervisor", 403), ("dongguan", 403)):
        assert_problem(put(alliance, who, uid, {"revision": 0, "impression": "x"}), status)

    first = drafted(alliance, "reader-ct", uid, impression="右侧额叶脑挫裂伤。")
    assert first["revision"] == 1 and first["template_id"] == "ct-head" and first["author"]["name"] == "reader-ct"
    assert first["findings"].startswith("脑实质内未见明显异常密度影")
    stale = assert_problem(put(alliance, "reader-ct", uid, {"revision": 0, "impression": "other"}), 409)
    assert stale["revision"] == 1
    second = put(alliance, "reader-ct", uid, {"revision": 1, "fields": {"midline": "shifted", "midline_shift": 4.5}})
    assert second.status_code == 200 and second.json["revision"] == 2
    assert second.json["fields"]["midline"] == "shifted" and second.json["fields"]["midline_shift"] == 4.5
    assert second.json["impression"] == "右侧额叶脑挫裂伤。"  # what was not sent stays

    for body, parameter in (
        ({"impression": "x"}, "revision"),
        ({"revision": "2"}, "revision"),
        ({"revision": 2, "fields": {"midline": "left"}}, "fields.midline"),
        ({"revision": 2, "fields": {"lungs": "clear"}}, "fields.lungs"),
        ({"revision": 2, "fields": {"midline_shift": "4 mm"}}, "fields.midline_shift"),
        ({"revision": 2, "fields": ["midline"]}, "fields"),
        ({"revision": 2, "impression": 7}, "impression"),
        ({"revision": 2, "critical": "yes"}, "critical"),
        ({"revision": 2, "critical": True}, "critical_category"),
        ({"revision": 2, "critical": True, "critical_category": "headache"}, "critical_category"),
        ({"revision": 2, "template_id": "ct-knee"}, "template_id"),
        ({"revision": 2, "colour": "red"}, "colour"),
    ):
        assert_problem(put(alliance, "reader-ct", uid, body), 400, parameter=parameter)
    assert_problem(alliance.client.put(f"/api/v1{report_path(uid)}", data="[", headers=alliance._auth("reader-ct"),
                                       content_type="application/json"), 400)
    unchanged = alliance.get(report_path(uid), "reader-ct").json
    assert unchanged["revision"] == 2 and unchanged["critical"] is False  # nothing half-written

    switched = put(alliance, "reader-ct", uid, {"revision": 2, "template_id": "ct-chest"})
    assert switched.status_code == 200 and switched.json["template_id"] == "ct-chest"
    assert switched.json["fields"]["lungs"] == "normal" and "midline" not in switched.json["fields"]

    alliance.advance(minutes=25)  # the claim's lease has lapsed: claim again to go on writing
    assert_problem(put(alliance, "reader-ct", uid, {"revision": 3, "impression": "late"}), 403)
    with alliance.sessions() as session:
        actions = [e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.object_id == uid))]
    assert actions.count("report.created") == 1 and actions.count("report.edited") == 2
    assert "report.viewed" in actions


# --- signing ---------------------------------------------------------------------------------------------------


def test_sign_makes_it_final_the_task_leaves_the_worklist_and_the_station_gets_it(
    alliance: Alliance, passwords: dict[str, str],
) -> None:
    uid = claimed(alliance, CT, "DG_CT", "reader-ct")
    assert_problem(alliance.post(report_path(uid, "/sign"), "reader-ct", {"password": passwords["reader-ct"]}), 409)
    drafted(alliance, "reader-ct", uid, impression="颅脑CT平扫未见明显异常。")

    wrong = assert_problem(alliance.post(report_path(uid, "/sign"), "reader-ct", {"password": "guess"}), 403)
    assert wrong["detail"] == "the password is not correct"
    still = alliance.get(report_path(uid), "reader-ct").json
    assert still["state"] == "draft" and still["signatures"] == [] and still["revision"] == 1
    assert signed_events(alliance.sessions, uid) == []
    assert_problem(alliance.post(report_path(uid, "/sign"), "reader-ct", {}), 400, parameter="password")
    assert_problem(alliance.post(report_path(uid, "/sign"), "supervisor", {"password": passwords["supervisor"]}), 403)
    assert_problem(alliance.post(report_path(uid, "/sign"), "reader-ct2", {"password": passwords["reader-ct2"]}), 404)

    alliance.advance(minutes=3)
    signed = alliance.post(report_path(uid, "/sign"), "reader-ct", {"password": passwords["reader-ct"]})
    assert signed.status_code == 200, signed.json
    report = signed.json
    assert report["state"] == "final" and report["finalized_at"] == alliance.now.isoformat()
    assert [(s["role"], s["signer"]["name"], s["signed_at"]) for s in report["signatures"]] == [
        ("author", "reader-ct", alliance.now.isoformat())]
    assert report["may"]["edit"] is False

    assert uid not in {item["study_uid"] for item in alliance.worklist("reader-ct")}
    task = alliance.task(uid)
    assert task.state == "signed" and task.signed_at == alliance.now and task.holder_id is None
    kinds = timeline(alliance, uid)
    assert ("report_signed", "reader-ct") in kinds and ("signed", "reader-ct") in kinds
    events = signed_events(alliance.sessions, uid)
    assert len(events) == 1
    with alliance.sessions() as session:
        row = session.scalar(select(Report).where(Report.id == events[0].payload["report_id"]))
        signature = session.scalar(select(ReportSignature).where(ReportSignature.report_id == row.id))
    assert events[0].key == f"report:{row.id}:{signature.id}"
    assert events[0].payload == {"report_id": row.id, "signature_id": signature.id, "study_uid": uid}

    final = assert_problem(put(alliance, "reader-ct", uid, {"revision": 1, "impression": "changed"}), 409)
    assert final["detail"] == "a final report is never changed; add an addendum"
    assert_problem(alliance.post(report_path(uid, "/sign"), "reader-ct", {"password": passwords["reader-ct"]}), 409)

    station = alliance.get(report_path(uid), "dongguan")
    assert station.status_code == 200 and station.json["state"] == "final"
    assert station.json["impression"] == "颅脑CT平扫未见明显异常。" and station.json["may"]["edit"] is False
    pdf = alliance.get(report_path(uid, "/pdf"), "dongguan")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    assert_problem(alliance.get(report_path(uid, "/pdf"), "xihe"), 404)  # another station's study
    assert_problem(alliance.get(report_path(uid), "xihe"), 404)

    # An addendum: a new signed part beside the original, which does not change.
    assert_problem(alliance.post(report_path(uid, "/addenda"), "supervisor",
                                 {"text": "补充", "password": passwords["supervisor"]}), 403)
    assert_problem(alliance.post(report_path(uid, "/addenda"), "reader-ct", {"text": " ", "password": "x"}), 400,
                   parameter="text")
    assert_problem(alliance.post(report_path(uid, "/addenda"), "reader-ct", {"text": "补充", "password": "x"}), 403)
    alliance.advance(hours=2)
    added = alliance.post(report_path(uid, "/addenda"), "reader-ct",
                          {"text": "补充：左侧上颌窦黏膜增厚。", "password": passwords["reader-ct"]})
    assert added.status_code == 201, added.json
    amended = added.json
    assert amended["state"] == "amended" and amended["impression"] == "颅脑CT平扫未见明显异常。"
    assert [a["text"] for a in amended["addenda"]] == ["补充：左侧上颌窦黏膜增厚。"]
    assert [(s["role"], s["addendum_id"] is not None) for s in amended["signatures"]] == [
        ("author", False), ("author", True)]
    assert len(signed_events(alliance.sessions, uid)) == 2  # once per signature
    assert ("addendum_signed", "reader-ct") in timeline(alliance, uid)
    with alliance.sessions() as session:
        first = session.get(ReportSignature, signature.id)
        assert first.canonical == signature.canonical and first.pdf_sha256 == signature.pdf_sha256
        assert session.scalar(select(ReportAddendum.signed_at)) == alliance.now
        refused = session.scalars(select(AuditEvent).where(AuditEvent.action == "report.sign_failed",
                                                           AuditEvent.object_type == "study")).all()
        assert len(refused) == 2 and {e.object_id for e in refused} == {uid}


def test_a_junior_report_is_preliminary_until_an_expert_countersigns(
    countersigning: Alliance, passwords: dict[str, str],
) -> None:
    alliance = countersigning
    uid = claimed(alliance, ECG, "XH_ECG", "reader-ecg")  # routine ECGs go to the general (junior) reader
    drafted(alliance, "reader-ecg", uid, impression="窦性心律；室性心动过速。", critical=True,
            critical_category="malignant_arrhythmia")
    signed = alliance.post(report_path(uid, "/sign"), "reader-ecg", {"password": passwords["reader-ecg"]})
    assert signed.status_code == 200, signed.json
    assert signed.json["state"] == "preliminary" and signed.json["awaiting"] == "countersign"
    assert signed.json["finalized_at"] is None
    assert signed_events(alliance.sessions, uid) == []  # nothing is delivered before it is final
    assert alliance.task(uid).state == "claimed"
    assert [n.kind for n in notices(alliance.sessions, "senior-ecg", "countersign_requested")] == ["countersign_requested"]
    # A critical finding does not wait for the countersignature.
    assert len(notices(alliance.sessions, "xihe", "critical")) == 1
    assert_problem(alliance.get(report_path(uid), "xihe"), 404)  # not final: the station does not read it yet

    assert_problem(put(alliance, "reader-ecg", uid, {"revision": 1, "impression": "x"}), 409)
    for who, status in (("reader-ecg", 403), ("supervisor", 403), ("reader-ct", 404)):
        assert_problem(alliance.post(report_path(uid, "/countersign"), who, {"password": passwords[who]}), status)
    assert_problem(alliance.post(report_path(uid, "/countersign"), "senior-ecg", {"password": "nope"}), 403)
    assert alliance.get(report_path(uid), "senior-ecg").json["state"] == "preliminary"
    assert alliance.get(report_path(uid), "senior-ecg").json["may"]["countersign"] is True

    alliance.advance(minutes=10)
    final = alliance.post(report_path(uid, "/countersign"), "senior-ecg", {"password": passwords["senior-ecg"]})
    assert final.status_code == 200, final.json
    assert final.json["state"] == "final" and final.json["awaiting"] is None
    assert [(s["role"], s["signer"]["name"]) for s in final.json["signatures"]] == [
        ("author", "reader-ecg"), ("countersign", "senior-ecg")]
    assert_problem(alliance.post(report_path(uid, "/countersign"), "senior-ecg",
                                 {"password": passwords["senior-ecg"]}), 409)
    events = signed_events(alliance.sessions, uid)
    assert len(events) == 1 and events[0].payload["signature_id"] == final.json["signatures"][1]["id"]
    task = alliance.task(uid)
    assert task.state == "signed" and task.signed_at == alliance.now
    kinds = [kind for kind, _actor in timeline(alliance, uid)]
    assert kinds.index("report_signed") < kinds.index("report_countersigned") < kinds.index("signed")
    assert alliance.get(report_path(uid), "xihe").json["state"] == "final"

    # An expert's own report needs no countersignature.
    ecg = alliance.study(ECG, "XH_ECG", PatientID="XH-2")
    with alliance.sessions() as session, session.begin():  # give this one to the senior
        session.get(ReadingTask, ecg.id).assignee_id = session.scalar(select(User.id).where(User.name == "senior-ecg"))
    assert alliance.post(f"/tasks/{ecg.id}/claim", "senior-ecg").status_code == 200
    drafted(alliance, "senior-ecg", ecg.study_uid)
    own = alliance.post(report_path(ecg.study_uid, "/sign"), "senior-ecg", {"password": passwords["senior-ecg"]})
    assert own.status_code == 200 and own.json["state"] == "final"


def test_a_provincial_consult_is_co_signed_into_the_same_report(alliance: Alliance, passwords: dict[str, str]) -> None:
    uid = claimed(alliance, CT, "DG_CT", "reader-ct")
    task = alliance.task(uid)
    drafted(alliance, "reader-ct", uid, impression="右肺上叶结节，性质待定。")
    asked = alliance.post(f"/tasks/{task.id}/consult", "reader-ct", {"question": "右肺结节性质？"})
    consult_id = asked.json["task_id"]
    assert_problem(alliance.post(report_path(uid, "/cosign"), "consultant", {"password": passwords["consultant"]}), 403)
    assert alliance.post(f"/tasks/{consult_id}/claim", "consultant").status_code == 200

    view = alliance.get(report_path(uid), "consultant").json
    assert view["may"]["edit"] is True and view["may"]["sign"] is False and view["may"]["cosign"] is False
    edited = put(alliance, "consultant", uid, {"revision": 1, "impression": "右肺上叶结节，考虑良性（错构瘤可能）。"})
    assert edited.status_code == 200 and edited.json["author"]["name"] == "reader-ct"
    early = assert_problem(alliance.post(report_path(uid, "/cosign"), "consultant",
                                         {"password": passwords["consultant"]}), 409)
    assert "signs the report first" in early["detail"]
    assert_problem(alliance.post(report_path(uid, "/sign"), "consultant", {"password": passwords["consultant"]}), 403)

    assert alliance.post(report_path(uid, "/sign"), "reader-ct", {"password": passwords["reader-ct"]}).status_code == 200
    assert_problem(alliance.post(report_path(uid, "/cosign"), "consultant", {"password": "wrong"}), 403)
    cosigned = alliance.post(report_path(uid, "/cosign"), "consultant",
                             {"password": passwords["consultant"], "answer": "同意，考虑错构瘤。"})
    assert cosigned.status_code == 200, cosigned.json
    assert cosigned.json["state"] == "final"
    assert [(s["role"], s["signer"]["name"]) for s in cosigned.json["signatures"]] == [
        ("author", "reader-ct"), ("cosign", "consultant")]
    with alliance.sessions() as session:
        assert len(session.scalars(select(Report)).all()) == 1  # one report, both signatures
        assert session.get(ReadingTask, consult_id).state == "signed"
    answered = [e for e in alliance.get(f"/studies/{uid}", "supervisor").json["timeline"]
                if e["kind"] == "consult_answered" and e["task_id"] == task.id]
    assert answered[0]["detail"]["mode"] == "co-sign" and answered[0]["detail"]["answer"] == "同意，考虑错构瘤。"
    assert ("report_cosigned", "consultant") in timeline(alliance, uid)
    assert len(signed_events(alliance.sessions, uid)) == 2


# --- FHIR ------------------------------------------------------------------------------------------------------


def _fhir_report(alliance: Alliance, passwords: dict[str, str]) -> tuple[str, dict[str, Any]]:
    uid = claimed(alliance, CT, "DG_CT", "reader-ct", AccessionNumber="DG2026030401", BodyPartExamined="CHEST")
    drafted(alliance, "reader-ct", uid, impression="胸部CT平扫未见明显异常。")
    assert alliance.post(report_path(uid, "/sign"), "reader-ct", {"password": passwords["reader-ct"]}).status_code == 200
    answer = alliance.client.get(f"/api/v1{report_path(uid)}",
                                 headers={**alliance._auth("dongguan"), "Accept": FHIR})
    assert answer.status_code == 200 and answer.mimetype == FHIR
    return uid, answer.json


def test_the_signed_report_as_a_fhir_diagnostic_report(alliance: Alliance, passwords: dict[str, str]) -> None:
    uid, resource = _fhir_report(alliance, passwords)
    assert resource["resourceType"] == "DiagnosticReport" and resource["status"] == "final"
    assert resource["code"]["coding"] == [{"system": "http://loinc.org", "code": "24627-2", "display": "CT Chest"}]
    assert resource["category"][0]["coding"][0]["code"] == "RAD"
    assert resource["subject"]["type"] == "Patient"
    assert resource["subject"]["identifier"]["value"] == "1CT1"
    assert resource["subject"]["identifier"]["system"].startswith("urn:telerad:patient-id:")
    assert resource["basedOn"][0]["identifier"]["value"] == "DG2026030401"
    assert resource["imagingStudy"] == [{"type": "ImagingStudy", "display": "e+1", "identifier": {
        "system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}}]
    assert resource["issued"] == alliance.now.isoformat()
    assert resource["effectiveDateTime"].startswith("2004-01-19")  # the study's own date
    assert [p["display"] for p in resource["performer"]] == ["县人民医院远程影像心电诊断中心", "影像医师 李强"]
    assert [r["identifier"]["value"] for r in resource["resultsInterpreter"]] == ["reader-ct"]
    assert resource["conclusion"] == "胸部CT平扫未见明显异常。"
    form = resource["presentedForm"][0]
    assert form["contentType"] == "application/pdf" and form["url"].endswith(f"/api/v1/studies/{uid}/report/pdf")
    assert resource["text"]["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">')

    # A draft has no FHIR form; the plain JSON is the default.
    other = claimed(alliance, CT, "DG_CT", "reader-ct")
    assert_problem(alliance.client.get(f"/api/v1{report_path(other)}",
                                       headers={**alliance._auth("reader-ct"), "Accept": FHIR}), 404)
    assert alliance.get(report_path(uid), "dongguan").mimetype == "application/json"


def test_the_fhir_diagnostic_report_validates_against_the_r4_model(alliance: Alliance, passwords: dict[str, str]) -> None:
    try:
        from fhir.resources.R4B.diagnosticreport import DiagnosticReport
    except ImportError:
        require("fhir.resources is not installed (the dev extra)")
    from reports.fhir import diagnostic_report

    _uid, resource = _fhir_report(alliance, passwords)
    DiagnosticReport.model_validate(resource)
    with alliance.sessions() as session:
        report = session.scalar(select(Report))
        inline = diagnostic_report(session, report, storage=storage_for(alliance.config))
    DiagnosticReport.model_validate(inline)
    form = inline["presentedForm"][0]
    data = base64.b64decode(form["data"])
    assert data.startswith(b"%PDF") and form["size"] == len(data)
    assert base64.b64decode(form["hash"]) == hashlib.sha1(data).digest()


# --- critical findings -----------------------------------------------------------------------------------------


def test_a_critical_finding_is_told_at_once_acknowledged_or_escalated_once(
    gatewayed: Alliance, passwords: dict[str, str],
) -> None:
    alliance = gatewayed
    reports.jobs.configure(alliance.config)
    acknowledged = claimed(alliance, CT, "DG_CT", "reader-ct")
    ignored = claimed(alliance, CT, "DG_CT", "reader-ct", PatientID="DG-2")
    for uid in (acknowledged, ignored):
        drafted(alliance, "reader-ct", uid, impression="左侧基底节区脑出血。", critical=True,
                critical_category="intracranial_haemorrhage")
        answer = alliance.post(report_path(uid, "/sign"), "reader-ct", {"password": passwords["reader-ct"]})
        assert answer.status_code == 200 and answer.json["critical_notice"]["notified_at"] == alliance.now.isoformat()
    signed_at = alliance.now

    banner = [n for n in alliance.get("/worklist", "dongguan").json["notifications"] if n["kind"] == "critical"]
    assert len(banner) == 2 and "颅内出血" in banner[0]["message"]
    station = Browser(alliance, "10.0.7.1")
    station.sign_in("dongguan", passwords["dongguan"])
    page = station.get("/station").get_data(as_text=True)
    assert page.count('class="critical-banner"') == 2 and "颅内出血" in page and "我已知晓" in page
    assert_problem(alliance.post(report_path(acknowledged, "/critical/ack"), "reader-ct"), 403)
    assert_problem(alliance.post(report_path(acknowledged, "/critical/ack"), "xihe"), 404)
    alliance.advance(minutes=5)
    ack = alliance.post(report_path(acknowledged, "/critical/ack"), "dongguan")
    assert ack.status_code == 200 and ack.json["acknowledged_by"]["name"] == "dongguan"
    assert ack.json["acknowledged_at"] == alliance.now.isoformat()
    again = alliance.post(report_path(acknowledged, "/critical/ack"), "dongguan")
    assert again.json["acknowledged_at"] == ack.json["acknowledged_at"]  # once
    page = station.get("/station").get_data(as_text=True)
    assert page.count('class="critical-banner"') == 1 and f'data-critical="{acknowledged}"' not in page

    alliance.now = signed_at + timedelta(minutes=29)
    assert reports.jobs.critical_sweep() == {"escalated": 0}
    alliance.now = signed_at + timedelta(minutes=31)
    assert reports.jobs.critical_sweep() == {"escalated": 1}
    assert reports.jobs.critical_sweep() == {"escalated": 0}
    alliance.advance(hours=3)
    assert reports.jobs.critical_sweep() == {"escalated": 0}

    told = notices(alliance.sessions, "supervisor", "critical_escalation")
    assert len(told) == 1 and "东关镇卫生院" in told[0].message
    with alliance.sessions() as session:  # and the gateway got the same notices, for SMS or WeChat
        posted = [d.payload for d in session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))]
    assert [(p["kind"], p["recipients"]) for p in posted] == [
        ("critical", ["dongguan"]), ("critical", ["dongguan"]), ("critical_escalation", ["supervisor"])]
    with alliance.sessions() as session:
        rows = {session.get(Report, n.report_id).study_pk: n for n in session.scalars(select(CriticalNotice))}
        escalated = [n for n in rows.values() if n.escalated_at is not None]
        assert len(escalated) == 1 and escalated[0].acknowledged_at is None
        kinds = session.scalars(select(TaskEvent.kind).where(TaskEvent.kind.like("critical%"))).all()
    assert sorted(kinds) == ["critical_acknowledged", "critical_escalated", "critical_notified", "critical_notified"]
    assert alliance.get(report_path(ignored), "dongguan").json["critical_notice"]["escalated_at"] is not None
    assert_problem(alliance.post(report_path(claimed(alliance, CT, "DG_CT", "reader-ct"), "/critical/ack"),
                                 "dongguan"), 409)
