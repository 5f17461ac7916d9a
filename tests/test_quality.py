"""Quality control: final reports drawn for peer review (at the sample share, the new readers' share, once per
report), the reviewer (qualified, never a signer, the least loaded), scoring and its refusals, a significant
discrepancy told and answered by an addendum, reassigning, reader scorecards on a known history, and the
reviewer's page in Chinese and English."""

from __future__ import annotations

import re
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alliance import CT, ECG, START, Alliance, assert_problem
from browser import LiveServer, WatchedPage, sign_in
from history import made
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from test_reports import countersigning  # noqa: F401 - the fixture, for a countersigned report
from test_reports import claimed, drafted, notices, report_path, signed_events, timeline, variant
from test_browser import IGNORED
from web_client import Browser, csrf_token, text_of

from reading_queue.signing import mark_signed
from reading_queue.tasks import ReadingTask
from reports import quality_jobs
from reports.models import Report, ReportAddendum, ReportSignature
from reports.quality import PeerReview, drawn, sampling_key
from reports.scorecards import scorecards
from telerad import events
from telerad.audit import AuditEvent
from telerad.sites import Site, subtree_ids
from telerad.users import User

KEY = bytes(range(32))


# --- helpers ---------------------------------------------------------------------------------------------------


def drawing(alliance: Alliance, monkeypatch: pytest.MonkeyPatch, **shares: float) -> None:
    """The worker's subscription of the peer-review job (and no other handler), drawing at ``shares`` (1 unless
    given)."""
    monkeypatch.setattr(events, "_handlers", {})
    monkeypatch.setattr(quality_jobs, "_config", None)
    drawn_at = {"sample_share": 1.0, "new_reader_share": 1.0} | shares
    quality_jobs.subscribe(variant(alliance.config, "quality", **drawn_at))


def dispatched(alliance: Alliance, uid: str) -> None:
    """Hand every ``report.signed`` event of the study to its handlers, as the worker does (again if done before)."""
    for event in signed_events(alliance.sessions, uid):
        events.dispatch(event.id, event.topic, event.payload)


def signed(alliance: Alliance, passwords: dict[str, str], reader: str) -> str:
    """A CT study read and signed final by ``reader`` through the API, its events handled; returns its UID."""
    uid = claimed(alliance, CT, "DG_CT", reader)
    drafted(alliance, reader, uid, findings="双肺纹理清晰。", impression="未见明显异常。")
    answer = alliance.post(report_path(uid, "/sign"), reader, {"password": passwords[reader]})
    assert answer.status_code == 200 and answer.json["state"] == "final", answer.json
    dispatched(alliance, uid)
    return uid


def report_row(session: Session, task: ReadingTask, author_id: int) -> Report:
    """A final report of ``task`` by ``author_id``, signed when the task was, written straight into the table."""
    report = Report(
        study_pk=task.study_pk, task_id=task.id, template_id="ct-head", state="final", fields={}, findings="",
        impression="未见明显异常。", critical=False, critical_category="", author_id=author_id, revision=1,
        created_at=task.signed_at, updated_at=task.signed_at, finalized_at=task.signed_at,
    )
    session.add(report)
    session.flush()
    return report


def finalised(alliance: Alliance, reader: str, ae: str = "DG_CT", **changes: Any) -> str:
    """A study whose report ``reader`` signed final, written into the tables with the event signing publishes
    (no key, no PDF: quick), the event handled; returns its UID."""
    uid = alliance.study(CT, ae, **changes).study_uid
    with alliance.sessions() as session, session.begin():
        author = session.scalar(select(User).where(User.name == reader))
        task = session.scalar(select(ReadingTask).where(ReadingTask.study_uid == uid))
        mark_signed(session, task, author, alliance.now)
        report = report_row(session, task, author.id)
        signature = ReportSignature(report_id=report.id, role="author", signer_id=author.id, signed_at=alliance.now,
                                    canonical="{}", signature="", algorithm="none", certificate="")
        session.add(signature)
        session.flush()
        events.publish(session, "report.signed", key=f"report:{report.id}:{signature.id}", report_id=report.id,
                       signature_id=signature.id, study_uid=uid)
    dispatched(alliance, uid)
    return uid


def review_of(alliance: Alliance, uid: str) -> PeerReview | None:
    with alliance.sessions() as session:
        return session.scalar(
            select(PeerReview).join(Report, Report.id == PeerReview.report_id)
            .where(Report.study_pk == alliance.task(uid).study_pk)
        )


def reviewer_of(alliance: Alliance, uid: str) -> str | None:
    review = review_of(alliance, uid)
    assert review is not None, f"study {uid} was not drawn"
    with alliance.sessions() as session:
        return session.get(User, review.reviewer_id).name if review.reviewer_id else None


def set_active(alliance: Alliance, name: str, active: bool) -> None:
    with alliance.sessions() as session, session.begin():
        session.execute(update(User).where(User.name == name).values(active=active))


def audited(alliance: Alliance, action: str) -> list[AuditEvent]:
    with alliance.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def reviewed(alliance: Alliance, passwords: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, int]:
    """A CT report by reader-ct, drawn and given to the consultant (the only other CT reader); its UID and review."""
    drawing(alliance, monkeypatch)
    uid = signed(alliance, passwords, "reader-ct")
    assert reviewer_of(alliance, uid) == "consultant"
    return uid, review_of(alliance, uid).id


# --- the draw --------------------------------------------------------------------------------------------------


def test_the_draw_is_keyed_on_the_report_and_draws_about_share_times_n(tmp_path: Path) -> None:
    n = 4000
    for share in (0.05, 0.2, 0.5):
        count = sum(drawn(KEY, report_id, share) for report_id in range(1, n + 1))
        spread = 4 * (n * share * (1 - share)) ** 0.5
        assert abs(count - n * share) < spread, (share, count)
    assert not any(drawn(KEY, report_id, 0.0) for report_id in range(1, n + 1))
    assert all(drawn(KEY, report_id, 1.0) for report_id in range(1, n + 1))
    first = [report_id for report_id in range(1, n + 1) if drawn(KEY, report_id, 0.2)]
    assert first == [report_id for report_id in range(1, n + 1) if drawn(KEY, report_id, 0.2)]  # the same again
    assert first != [report_id for report_id in range(1, n + 1) if drawn(bytes(32), report_id, 0.2)]

    key = sampling_key(tmp_path / "var")
    assert len(key) == 32 and sampling_key(tmp_path / "var") == key  # made once, then read
    assert stat.S_IMODE((tmp_path / "var" / "peer-review.key").stat().st_mode) == 0o600
    assert [path.name for path in (tmp_path / "var").iterdir()] == ["peer-review.key"]


def test_every_final_report_is_drawn_once_at_share_one_and_none_at_zero(
    pull: Alliance, passwords: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    uid, review_id = reviewed(pull, passwords, monkeypatch)
    review = review_of(pull, uid)
    assert review.state == "pending" and review.new_reader is True and review.assigned_at == pull.now
    dispatched(pull, uid)  # the event delivered again: nothing more
    dispatched(pull, uid)
    with pull.sessions() as session:
        assert session.scalar(select(func.count()).select_from(PeerReview)) == 1
    assert timeline(pull, uid).count(("peer_review_drawn", "system")) == 1
    assert len(notices(pull.sessions, "consultant", "peer_review")) == 1
    assert len(audited(pull, "peer_review.drawn")) == 1

    # An addendum's signature is not a report becoming final: its event draws nothing.
    added = pull.post(report_path(uid, "/addenda"), "reader-ct", {"text": "补充。", "password": passwords["reader-ct"]})
    assert added.status_code == 201, added.json
    assert quality_jobs.on_report_signed(1, "report.signed", signed_events(pull.sessions, uid)[-1].payload) is None
    assert review_of(pull, uid).id == review_id

    drawing(pull, monkeypatch, sample_share=0.0, new_reader_share=0.0)
    other = finalised(pull, "reader-ct")
    assert review_of(pull, other) is None
    with pull.sessions() as session:
        assert session.scalar(select(func.count()).select_from(PeerReview)) == 1


def test_a_new_reader_is_drawn_at_the_new_readers_share(pull: Alliance, monkeypatch: pytest.MonkeyPatch) -> None:
    drawing(pull, monkeypatch, sample_share=0.0, new_reader_share=1.0)
    first = finalised(pull, "reader-ct")
    assert review_of(pull, first).new_reader is True
    pull.advance(days=89)
    assert review_of(pull, finalised(pull, "reader-ct")).new_reader is True  # still new
    pull.advance(days=2)  # 91 days after the first signature: no longer new, drawn at the sample share
    assert review_of(pull, finalised(pull, "reader-ct")) is None
    assert review_of(pull, finalised(pull, "reader-ct2", "XH_DR", Modality="DX")).new_reader is True


def test_a_countersigned_report_is_drawn_at_its_countersignature_and_reviewed_by_neither_signer(
    countersigning: Alliance, passwords: dict[str, str], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    alliance = countersigning
    drawing(alliance, monkeypatch)
    assert reviewer_of(alliance, finalised(alliance, "reader-ct")) == "consultant"  # who now has more to do
    uid = claimed(alliance, ECG, "XH_ECG", "reader-ecg")
    drafted(alliance, "reader-ecg", uid, impression="窦性心律。")
    answer = alliance.post(report_path(uid, "/sign"), "reader-ecg", {"password": passwords["reader-ecg"]})
    assert answer.json["state"] == "preliminary"
    dispatched(alliance, uid)
    assert review_of(alliance, uid) is None  # preliminary: not drawn
    answer = alliance.post(report_path(uid, "/countersign"), "senior-ecg", {"password": passwords["senior-ecg"]})
    assert answer.json["state"] == "final"
    dispatched(alliance, uid)
    assert reviewer_of(alliance, uid) == "consultant"  # the busiest, but neither the author nor the countersigner


# --- the reviewer ----------------------------------------------------------------------------------------------


def test_the_reviewer_is_qualified_never_the_author_and_has_the_fewest_pending_reviews(
    pull: Alliance, monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawing(pull, monkeypatch)
    dx = {"ae": "XH_DR", "Modality": "DX"}
    first = finalised(pull, "reader-ct", **dx)
    assert reviewer_of(pull, first) == "consultant"  # no pending reviews on either: by name
    assert reviewer_of(pull, finalised(pull, "reader-ct", **dx)) == "reader-ct2"  # the consultant has one
    assert reviewer_of(pull, finalised(pull, "reader-ct2", **dx)) == "reader-ct"  # never the author
    assert reviewer_of(pull, finalised(pull, "reader-ct")) == "consultant"  # the only other CT reader

    # A minor discrepancy is told to nobody and starts no addendum.
    minor = review_of(pull, first).id
    scored = pull.post(f"/peer-reviews/{minor}", "consultant", {"score": "minor", "comment": "描述欠完整。"})
    assert scored.status_code == 200 and (scored.json["score"], scored.json["radpeer"]) == ("minor", 2)
    assert notices(pull.sessions, "supervisor", "peer_review_discrepancy") == []
    assert notices(pull.sessions, "reader-ct", "peer_review_discrepancy") == []
    assert_problem(pull.post(f"/peer-reviews/{minor}/addendum", "reader-ct"), 409)

    set_active(pull, "consultant", False)
    nobody = finalised(pull, "reader-ct")
    review = review_of(pull, nobody)
    assert review.reviewer_id is None and review.state == "pending"
    told = notices(pull.sessions, "supervisor", "peer_review_unassigned")
    assert len(told) == 1 and nobody in told[0].message
    listed = pull.get("/peer-reviews", "supervisor").json["items"]
    assert [(item["study_uid"], item["reviewer"]) for item in listed if item["id"] == review.id] == [(nobody, None)]

    # A supervisor assigns it once someone qualified is back; only a qualified non-signer is taken.
    path = f"/peer-reviews/{review.id}/reassign"
    assert_problem(pull.post(path, "supervisor", {"reason": "主任指派"}), 409)  # still nobody
    set_active(pull, "consultant", True)
    assert_problem(pull.post(path, "supervisor", {}), 400, parameter="reason")
    assert_problem(pull.post(path, "supervisor", {"user": "reader-ct", "reason": "x"}), 400, parameter="user")
    assert_problem(pull.post(path, "supervisor", {"user": "reader-ct2", "reason": "x"}), 400, parameter="user")
    assert_problem(pull.post(path, "supervisor", {"user": "nobody", "reason": "x"}), 400, parameter="user")
    assert_problem(pull.post(path, "reader-ct", {"reason": "x"}), 404)  # the author does not see a pending review
    assert review_of(pull, nobody).reviewer_id is None  # nothing written by the refusals
    moved = pull.post(path, "supervisor", {"reason": "主任指派"})
    assert moved.status_code == 200, moved.json
    assert moved.json["reviewer"]["name"] == "consultant" and moved.json["may"]["reassign"] is True
    assert ("peer_review_reassigned", "supervisor") in timeline(pull, nobody)
    assert len(notices(pull.sessions, "consultant", "peer_review")) == 3  # the two drawn, and this one
    assert_problem(pull.post(path, "supervisor", {"user": "consultant", "reason": "x"}), 409)

    cancelled = pull.post(f"/peer-reviews/{review.id}/cancel", "supervisor", {"reason": "测试病例"})
    assert cancelled.status_code == 200 and cancelled.json["state"] == "cancelled"
    assert_problem(pull.post(f"/peer-reviews/{review.id}/cancel", "supervisor", {"reason": "again"}), 409)
    assert_problem(pull.post(f"/peer-reviews/{review.id}", "consultant", {"score": "agree"}), 409)


# --- scoring ---------------------------------------------------------------------------------------------------


def test_scoring_once_by_the_reviewer_with_a_comment_for_a_discrepancy(
    pull: Alliance, passwords: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    uid, review_id = reviewed(pull, passwords, monkeypatch)
    path = f"/peer-reviews/{review_id}"
    mine = pull.get("/peer-reviews", "consultant").json["items"]
    assert [(item["id"], item["state"], item["author"]["name"]) for item in mine] == [
        (review_id, "pending", "reader-ct")]
    assert pull.get("/peer-reviews", "reader-ct").json["items"] == []  # the author sees it once scored
    assert_problem(pull.get(path, "reader-ct"), 404)
    shown = pull.get(path, "consultant").json
    assert shown["report"]["impression"] == "未见明显异常。" and shown["may"]["score"] is True
    assert_problem(pull.get("/peer-reviews", "consultant", state="open"), 400, parameter="state")

    assert_problem(pull.post(path, "supervisor", {"score": "agree"}), 403)  # sees it, but is not the reviewer
    assert_problem(pull.post(path, "reader-ct2", {"score": "agree"}), 404)
    assert_problem(pull.post(path, "consultant", {"score": "great"}), 400, parameter="score")
    assert_problem(pull.post(path, "consultant", {"score": 3}), 400, parameter="score")
    assert_problem(pull.post(path, "consultant", {"score": "minor"}), 400, parameter="comment")
    assert_problem(pull.post(path, "consultant", {"score": "significant", "comment": "  "}), 400, parameter="comment")
    assert_problem(pull.post(path, "consultant", {"score": "agree", "comment": "x" * 4001}), 400, parameter="comment")
    assert_problem(pull.post(path, "consultant", ["agree"]), 400)
    review = review_of(pull, uid)
    assert (review.state, review.score, review.done_at) == ("pending", None, None)  # nothing written
    assert audited(pull, "peer_review.scored") == []

    pull.advance(hours=3)
    scored = pull.post(path, "consultant", {"score": "significant", "comment": "左侧基底节区小片出血灶漏报。"})
    assert scored.status_code == 200, scored.json
    assert (scored.json["state"], scored.json["score"], scored.json["radpeer"]) == ("done", "significant", 3)
    assert scored.json["done_at"] == pull.now.isoformat() and scored.json["may"]["score"] is False
    assert_problem(pull.post(path, "consultant", {"score": "agree"}), 409)
    assert review_of(pull, uid).score == "significant"
    assert ("peer_review_scored", "consultant") in timeline(pull, uid)
    assert [event.detail["score"] for event in audited(pull, "peer_review.scored")] == ["significant"]

    for person in ("supervisor", "reader-ct"):  # the centre's supervisor and the original reader are told
        told = notices(pull.sessions, person, "peer_review_discrepancy")
        assert len(told) == 1 and "漏报" in told[0].message and uid in told[0].message
    assert notices(pull.sessions, "consultant", "peer_review_discrepancy") == []
    authors = pull.get("/peer-reviews", "reader-ct", state="done").json["items"]
    assert [item["id"] for item in authors] == [review_id]


# --- the addendum ----------------------------------------------------------------------------------------------


def test_a_significant_discrepancy_starts_an_addendum_signed_like_any_other(
    pull: Alliance, passwords: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    uid, review_id = reviewed(pull, passwords, monkeypatch)
    path = f"/peer-reviews/{review_id}/addendum"
    assert_problem(pull.post(path, "reader-ct"), 404)  # not scored yet: the author does not see it
    pull.post(f"/peer-reviews/{review_id}", "consultant", {"score": "significant", "comment": "漏报出血。"})
    with pull.sessions() as session:
        original = session.scalar(select(ReportSignature).order_by(ReportSignature.id))

    assert_problem(pull.post(path, "supervisor"), 403)  # sees it, may not amend
    started = pull.post(path, "reader-ct")
    assert started.status_code == 201, started.json
    draft = started.json["addendum"]["draft"]
    assert f"质控复核第 {review_id} 号" in draft and started.json["addendum"]["signed"] is None
    assert started.json["may"]["sign_addendum"] is True and started.json["may"]["start_addendum"] is False
    again = pull.post(path, "reader-ct")
    assert again.status_code == 200 and again.json["addendum"]["draft"] == draft  # started once
    assert timeline(pull, uid).count(("peer_review_addendum_started", "reader-ct")) == 1
    report = pull.get(report_path(uid), "reader-ct").json
    assert report["state"] == "final" and report["addenda"] == []  # a draft is not part of the report

    pull.advance(hours=1)
    text = draft + "左侧基底节区小片出血灶。"
    added = pull.post(report_path(uid, "/addenda"), "reader-ct", {"text": text, "password": passwords["reader-ct"]})
    assert added.status_code == 201, added.json
    assert added.json["state"] == "amended" and added.json["impression"] == "未见明显异常。"
    assert [a["text"] for a in added.json["addenda"]] == [text]
    with pull.sessions() as session:
        kept = session.get(ReportSignature, original.id)
        assert (kept.canonical, kept.pdf_sha256) == (original.canonical, original.pdf_sha256)
    dispatched(pull, uid)
    with pull.sessions() as session:
        assert session.scalar(select(func.count()).select_from(PeerReview)) == 1

    answered = pull.get(f"/peer-reviews/{review_id}", "reader-ct").json
    assert answered["addendum"]["signed"]["text"] == text
    assert answered["addendum"]["signed"]["signed_at"] == pull.now.isoformat()
    assert answered["may"]["sign_addendum"] is False
    assert_problem(pull.post(path, "reader-ct"), 409)
    assert ("addendum_signed", "reader-ct") in timeline(pull, uid)


# --- scorecards ------------------------------------------------------------------------------------------------


def test_scorecards_are_computed_exactly_on_a_known_history(pull: Alliance) -> None:
    """Tasks signed at known minutes after completion, and reviews and addenda written straight into the tables:

    ====  =========  ======  ======================================  ============================
    task  author     signed  peer review                             addendum
    ====  =========  ======  ======================================  ============================
    A     reader-ct  30      agree by the consultant                 signed after the period
    B     reader-ct  90      significant by reader-ct2               signed in the period
    C     reader-ct  2000    pending (the consultant)                —
    D     reader-ct2 60      minor by reader-ct                      —
    F     reader-ct  20000   agree by the consultant, after the      —
                             period (and signed after it)
    ====  =========  ======  ======================================  ============================
    """
    tasks = {}
    for name, ae, changes, minutes, who in (
        ("A", "DG_CT", {}, 30, "reader-ct"), ("B", "DG_CT", {}, 90, "reader-ct"),
        ("C", "DG_CT", {}, 2000, "reader-ct"), ("D", "XH_DR", {"Modality": "DX"}, 60, "reader-ct2"),
        ("F", "DG_CT", {}, 20000, "reader-ct"),
    ):
        history = made(pull, CT, ae, **changes)
        history.sign(minutes, who)
        tasks[name] = pull.task(history.task.study_uid)
    since, until = START, START + timedelta(days=10)
    inside, after = START + timedelta(days=5), until + timedelta(hours=1)
    with pull.sessions() as session, session.begin():
        ids = dict(session.execute(select(User.name, User.id)).all())
        reports = {name: report_row(session, task, task.reader_id) for name, task in tasks.items()}
        for name, reviewer, state, score, done_at in (
            ("A", "consultant", "done", "agree", inside), ("B", "reader-ct2", "done", "significant", inside),
            ("C", "consultant", "pending", None, None), ("D", "reader-ct", "done", "minor", inside),
            ("F", "consultant", "done", "agree", after),
        ):
            session.add(PeerReview(
                report_id=reports[name].id, task_id=tasks[name].id, new_reader=False, state=state,
                reviewer_id=ids[reviewer], score=score, comment="", created_at=since, assigned_at=since,
                done_at=done_at,
            ))
        for name, signed_at in (("A", after), ("B", inside)):
            session.add(ReportAddendum(report_id=reports[name].id, text="补充", author_id=ids["reader-ct"],
                                       created_at=signed_at, signed_at=signed_at))
        session.execute(update(User).where(User.name == "reader-ecg").values(active=False))  # nothing: not listed

    empty = {"volume": 0, "median_minutes": None, "p90_minutes": None, "within_deadline_share": None,
             "reviews_received": 0, "agree": 0, "minor": 0, "significant": 0, "agreement_share": None,
             "reviews_done": 0, "addenda": 0}
    expected = [
        {"name": "reader-ct", "display_name": "影像医师 李强", "volume": 3, "median_minutes": 90.0,
         "p90_minutes": 1618.0, "within_deadline_share": 0.6667, "reviews_received": 2, "agree": 1, "minor": 0,
         "significant": 1, "agreement_share": 0.5, "reviews_done": 1, "addenda": 1},
        {"name": "reader-ct2", "display_name": "影像医师 赵磊", "volume": 1, "median_minutes": 60.0,
         "p90_minutes": 60.0, "within_deadline_share": 1.0, "reviews_received": 1, "agree": 0, "minor": 1,
         "significant": 0, "agreement_share": 0.0, "reviews_done": 1, "addenda": 0},
        {**empty, "name": "senior-ecg", "display_name": "心电主任 孙红"},
    ]
    with pull.sessions() as session:
        county = session.scalar(select(Site.id).where(Site.code == "CNTY"))
        province = session.scalar(select(Site.id).where(Site.code == "PROV"))
        assert scorecards(session, subtree_ids(session, county), since, until) == expected
        everyone = scorecards(session, subtree_ids(session, province), since, until)
    assert [card["name"] for card in everyone] == ["consultant", "reader-ct", "reader-ct2", "senior-ecg"]
    assert everyone[0] == {**empty, "name": "consultant", "display_name": "省级专家 陈教授", "reviews_done": 1}

    period = {"since": since.isoformat(), "until": until.isoformat()}
    answer = pull.get("/scorecards", "supervisor", **period)
    assert answer.status_code == 200, answer.json
    assert answer.json == {**period, "items": expected}
    assert pull.get("/scorecards", "reader-ct", **period).json["items"] == expected[:1]  # a reader: their own only
    assert_problem(pull.get("/scorecards", "reader-ct", reader="reader-ct2", **period), 403)
    assert [c["name"] for c in pull.get("/scorecards", "supervisor", reader="reader-ct2", **period).json["items"]] == [
        "reader-ct2"]
    assert_problem(pull.get("/scorecards", "dongguan", **period), 403)
    assert_problem(pull.get("/scorecards", "supervisor", since="yesterday"), 400, parameter="since")
    assert_problem(pull.get("/scorecards", "supervisor", modality="CT", **period), 400, parameter="modality")
    assert_problem(pull.get("/scorecards", "supervisor", since=until.isoformat(), until=since.isoformat()), 400)


# --- the reviewer's page ---------------------------------------------------------------------------------------


def test_the_review_page_in_chinese_and_english_scores_and_starts_the_addendum(
    pull: Alliance, passwords: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    uid, review_id = reviewed(pull, passwords, monkeypatch)
    people = {}
    for number, name in enumerate(("consultant", "reader-ct", "supervisor"), start=20):
        people[name] = Browser(pull, f"10.0.1.{number}")
        assert people[name].sign_in(name, passwords[name]).status_code == 302
    consultant, author, supervisor = people["consultant"], people["reader-ct"], people["supervisor"]

    worklist = consultant.get("/worklist")
    assert "质控复核 (1)" in text_of(worklist)
    listed = consultant.get("/reviews")
    assert listed.status_code == 200 and f'href="/reviews/{review_id}"' in listed.get_data(as_text=True)
    assert "影像医师 李强" in text_of(listed) and "您的评分" in text_of(listed)
    assert "暂无需要您处理的质控复核" in text_of(author.get("/reviews"))
    assert "等待 省级专家 陈教授 评分" in text_of(supervisor.get("/reviews"))  # the centre's pending reviews
    watched = text_of(supervisor.get(f"/reviews/{review_id}"))
    assert "等待 省级专家 陈教授 评分。" in watched and "提交评分" not in watched

    page = consultant.get(f"/reviews/{review_id}")
    words = text_of(page)
    assert page.status_code == 200
    for shown in ("已签发的报告", "打开影像", "同意", "轻微差异", "重大差异", "提交评分", "双肺纹理清晰。", "未见明显异常。",
                  "颅骨 未见骨折"):
        assert shown in words, shown
    assert f'href="/studies/{uid}"' in page.get_data(as_text=True)
    english = text_of(consultant.get(f"/reviews/{review_id}", lang="en"))
    for shown in ("The signed report", "Open images", "Agree", "Minor discrepancy", "Significant discrepancy",
                  "Submit the score", "Skull No fracture"):
        assert shown in english, shown
    consultant.get(f"/reviews/{review_id}", lang="zh")
    assert author.get(f"/reviews/{review_id}").status_code == 404  # not scored yet

    form = {"csrf_token": csrf_token(page), "score": "significant", "comment": ""}
    refused = consultant.client.post(f"/reviews/{review_id}", data=form)
    assert refused.status_code == 400 and "请在意见中写明差异所在" in text_of(refused)
    assert 'value="significant" checked' in refused.get_data(as_text=True)  # what was chosen stays chosen
    assert review_of(pull, uid).state == "pending"
    done = consultant.client.post(f"/reviews/{review_id}", data={**form, "comment": "漏报出血。"})
    assert done.status_code == 302 and done.headers["Location"].endswith(f"/reviews/{review_id}")
    after = text_of(consultant.get(f"/reviews/{review_id}"))
    assert "谢谢，您的评分已保存。" in after and "漏报出血。" in after and "提交评分" not in after
    assert review_of(pull, uid).score == "significant"

    assert "质控复核 (1)" in text_of(author.get("/worklist"))  # an addendum to write
    mine = author.get(f"/reviews/{review_id}")
    assert "开始补充报告" in text_of(mine)
    started = author.client.post(f"/reviews/{review_id}/addendum", data={"csrf_token": csrf_token(mine)})
    assert started.status_code == 302
    drafting = author.get(f"/reviews/{review_id}")
    html = drafting.get_data(as_text=True)
    assert f"质控复核第 {review_id} 号" in html and f"/api/v1/studies/{uid}/report/addenda" in html
    assert "签名密码" in text_of(drafting) and "review.js" in html


def test_in_chromium_the_reviewer_scores_with_the_big_buttons_and_the_author_signs_the_addendum(
    pull: Alliance, passwords: dict[str, str], monkeypatch: pytest.MonkeyPatch, live_server: LiveServer,
    watched: WatchedPage,
) -> None:
    from playwright.sync_api import expect

    uid, review_id = reviewed(pull, passwords, monkeypatch)
    page = watched.page
    sign_in(page, live_server.url, "consultant", passwords["consultant"], f"/reviews/{review_id}")
    expect(page.locator("h1")).to_have_text(f"质控复核 第 {review_id} 号")
    page.get_by_text("重大差异", exact=True).click()  # the whole big button is the choice
    expect(page.locator('input[value="significant"]')).to_be_checked()
    page.locator("#comment").fill("左侧基底节区小片出血灶漏报。")
    watched.screenshot("scoring", full_page=True)
    page.locator("#submit-score").click()
    expect(page.locator("#score")).to_contain_text("3 · 重大差异")
    assert review_of(pull, uid).score == "significant"

    second = page.context.browser.new_context(locale="zh-CN")  # the author, in a browser of their own
    author = second.new_page()
    watched.watch(author)
    sign_in(author, live_server.url, "reader-ct", passwords["reader-ct"], f"/reviews/{review_id}")
    author.locator("#start-addendum").click()
    text = author.locator("#addendum-text")
    expect(text).to_have_value(re.compile(f"^依据质控复核第 {review_id} 号意见"))
    author.locator("#addendum-password").fill(passwords["reader-ct"])
    author.locator("#sign-addendum").click()  # nothing written after the citation yet: refused on the page
    expect(author.locator("#addendum-error")).to_have_text("请在引用复核意见的那一行后面写补充内容。")
    text.press("End")
    text.type("左侧基底节区小片出血灶。")
    author.locator("#addendum-password").fill("not my password")
    author.locator("#sign-addendum").click()
    expect(author.locator("#addendum-error")).to_contain_text("密码")
    author.locator("#addendum-password").fill(passwords["reader-ct"])
    author.locator("#sign-addendum").click()
    expect(author.locator("#addendum")).to_have_text("此复核之后已签发补充报告。")
    expect(author.locator("#report-addenda")).to_contain_text("左侧基底节区小片出血灶。")
    report = pull.get(report_path(uid), "reader-ct").json
    assert report["state"] == "amended" and report["impression"] == "未见明显异常。"
    watched.screenshot("addendum-signed")
    second.close()
    watched.assert_clean([*IGNORED, r"/api/v1/studies/.*/report/addenda$"])  # the wrong password's 403
