"""The worklist and station pages as people use them: signed in through the real form, in their own browser,
seeing what the access rules give them, in Chinese unless they ask for English."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import TimestampSigner
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from browser import sign_in
from dicom_files import copy_with_new_uids
from reading_queue import jobs
from reading_queue.signing import mark_signed
from reading_queue.tasks import ReadingTask
from telerad.audit import AuditEvent
from telerad.config import Config
from telerad.users import User
from alliance import CT, ECG, Alliance
from web_client import Browser, csrf_token, row_of, text_of



def test_a_reader_sees_the_task_row_with_the_patient_and_a_countdown(alliance: Alliance, browser) -> None:
    ct = alliance.study(CT, "DG_CT")
    ecg = alliance.study(ECG, "XH_ECG", PatientName="Xi^He")
    alliance.advance(hours=1)

    page = browser("reader-ct").get("/worklist", lang="en")
    assert page.status_code == 200
    row = row_of(page, f"task-{ct.id}")
    assert "CompressedSamples CT1" in row and "Other sex" in row
    assert re.search(r'class="left later" data-due="[^"]+">22 h 59 min<', row)
    assert '<span class="priority ROUTINE">Routine</span>' in row
    assert "Dongguan Township Health Centre" in row and ">CT<" in row.replace(" <", "<")
    assert "Assigned to 影像医师 李强" in row and "Waiting for a reader" in row
    assert "Claim and open" in row and f'data-study-uid="{ct.study_uid}"' in row
    assert not row_of(page, f"task-{ecg.id}") and "Xi He" not in text_of(page)  # ECGs are not this reader's

    ecg_page = browser("reader-ecg").get("/worklist", lang="en")
    ecg_row = row_of(ecg_page, f"task-{ecg.id}")
    assert "Xi He" in ecg_row and "Female · 42 y" in ecg_row and "ECG" in ecg_row
    assert "CompressedSamples" not in text_of(ecg_page)


def test_pages_are_chinese_by_default_and_english_on_request(alliance: Alliance, browser) -> None:
    alliance.study(CT, "DG_CT")
    reader = browser("reader-ct")
    chinese = reader.get("/worklist")
    assert '<html lang="zh-CN"' in chinese.get_data(as_text=True)
    words = text_of(chinese)
    for shown in ("工作列表", "剩余时间", "优先级", "患者", "领取并打开", "等待阅片", "常规", "24 小时 0 分"):
        assert shown in words
    assert "Claim and open" not in words and "Time left" not in words

    english = text_of(reader.get("/worklist", lang="en"))
    for shown in ("Worklist", "Time left", "Priority", "Patient", "Claim and open", "Waiting for a reader", "Routine"):
        assert shown in english
    assert "领取并打开" not in english
    assert "Time left" in text_of(reader.get("/worklist"))  # the choice is remembered

    station = browser("dongguan")
    assert "上传检查文件夹" in text_of(station.get("/station"))
    assert "Upload a study folder" in text_of(station.get("/station", lang="en"))


def test_each_role_lands_on_its_own_page(alliance: Alliance, browser) -> None:
    station, reader, supervisor = browser("dongguan"), browser("reader-ct"), browser("supervisor")
    assert station.get("/worklist").headers["Location"].endswith("/station")
    assert station.get("/").headers["Location"].endswith("/station")
    assert reader.get("/station").headers["Location"].endswith("/worklist")
    assert supervisor.get("/worklist").status_code == 200 and supervisor.get("/station").status_code == 200
    admin, consultant = browser("admin"), browser("consultant")
    assert admin.get("/worklist").status_code == 200 and admin.get("/station").status_code == 200
    assert consultant.get("/worklist").status_code == 200
    assert consultant.get("/station").headers["Location"].endswith("/worklist")
    anonymous = Browser(alliance, "10.0.1.1")
    for path in ("/worklist", "/station", "/worklist/details?task=1"):
        assert anonymous.get(path).headers["Location"].startswith("/login")


def test_browser_posts_need_the_csrf_header_and_claiming_opens_the_study(alliance: Alliance, browser) -> None:
    task = alliance.study(CT, "DG_CT")
    reader = browser("reader-ct")
    page = reader.get("/worklist")
    token = csrf_token(page)

    refused = reader.api_post(f"/api/v1/tasks/{task.id}/claim")
    assert refused.status_code == 400
    assert alliance.task(task.study_uid).holder_id is None
    claimed = reader.api_post(f"/api/v1/tasks/{task.id}/claim", token=token)
    assert claimed.status_code == 200, claimed.get_data(as_text=True)
    assert claimed.json["holder"]["name"] == "reader-ct"

    row = row_of(reader.get("/worklist", lang="en"), f"task-{task.id}")
    assert "Continue reading" in row and "Held by 影像医师 李强" in row and "since 03-04 11:01" in row

    # without scripts the button is a form: CSRF field required, then straight into the viewer
    form = {"back": "/worklist?view=mine"}
    assert reader.client.post(f"/worklist/tasks/{task.id}/claim", data=form).status_code == 400
    opened = reader.client.post(f"/worklist/tasks/{task.id}/claim", data={**form, "csrf_token": token})
    assert opened.status_code == 302 and opened.headers["Location"] == f"/studies/{task.study_uid}"


def test_a_task_held_by_someone_else_shows_who_since_when_and_refuses_a_claim_clearly(
    alliance: Alliance, browser
) -> None:
    task = alliance.study(CT, "DG_DR", Modality="DX")  # pushed to reader-ct
    holder, other = browser("reader-ct"), browser("reader-ct2")
    assert holder.api_post(f"/api/v1/tasks/{task.id}/claim", token=csrf_token(holder.get("/worklist"))).status_code == 200

    row = row_of(other.get("/worklist", lang="en"), f"task-{task.id}")
    assert "Held by 影像医师 李强" in row and "since 03-04 11:01" in row and "Being read" in row
    assert "Open (view only)" in row and f'href="/studies/{task.study_uid}"' in row and "Claim and open" not in row

    alliance.advance(hours=22)  # past the escalation point; the holder is still at it
    holder.api_post(f"/api/v1/tasks/{task.id}/claim", token=csrf_token(holder.get("/worklist")))
    jobs.sla_sweep()
    page = other.get("/worklist", lang="en")
    notices = re.search(r'<section id="notices".*?</section>', page.get_data(as_text=True), flags=re.S).group(0)
    assert " hidden" not in notices.split(">", 1)[0]
    assert "Escalated: offered to every reader" in notices and f'href="#task-{task.id}"' in notices
    row = row_of(page, f"task-{task.id}")
    assert 'class="badge escalated">Escalated<' in row and "Reminded ×" in row
    assert re.search(r'class="left near"[^>]*>2 h 0 min<', row)

    # an escalated task may be taken by any qualified reader, unless someone holds it: a clear message says so
    back = "/worklist?modality=DX&lang=en"
    refused = other.client.post(f"/worklist/tasks/{task.id}/claim", data={"csrf_token": csrf_token(page), "back": back})
    assert refused.status_code == 302 and refused.headers["Location"] == back
    banner = text_of(other.get(back))
    assert "Someone else has just claimed this study." in banner
    conflict = other.api_post(f"/api/v1/tasks/{task.id}/claim", token=csrf_token(page))
    assert conflict.status_code == 409 and conflict.mimetype == "application/problem+json"
    other.client.post(f"/worklist/tasks/{task.id}/claim", data={"csrf_token": csrf_token(page), "back": "/worklist"})
    assert "此检查刚刚被其他医师领取。" in text_of(other.get("/worklist", lang="zh"))


def test_filters_are_query_parameters_a_view_can_be_bookmarked_by(alliance: Alliance, browser) -> None:
    ct = alliance.study(CT, "DG_CT")
    xihe = alliance.study(ECG, "XH_ECG")
    lijia = alliance.study(ECG, "LIJIA_ECG")  # urgent by the policy's rule
    supervisor = browser("supervisor")

    def rows(**query: str) -> set[int]:
        page = supervisor.get("/worklist", **query)
        assert page.status_code == 200
        return {int(found) for found in re.findall(r'<tr id="task-(\d+)"', page.get_data(as_text=True))}

    assert rows() == {ct.id, xihe.id, lijia.id}
    assert rows(modality="ECG") == {xihe.id, lijia.id}
    assert rows(priority="URGENT") == {lijia.id}
    assert rows(site="TS-XIHE") == {xihe.id}
    assert rows(modality="ECG", site="VIL-LIJIA") == {lijia.id}
    assert rows(view="open") == {ct.id, xihe.id, lijia.id}
    assert rows(view="mine") == set()
    assert rows(modality="PET", priority="soon", site="NOWHERE", view="x", page="-1") == {ct.id, xihe.id, lijia.id}

    page = supervisor.get("/worklist", modality="ECG", priority="URGENT").get_data(as_text=True)
    assert '<option value="ECG" selected>' in page and '<option value="URGENT" selected>' in page
    assert re.search(r'href="/worklist\?modality=ECG&amp;priority=URGENT&amp;view=mine"', page)
    assert '"filters": {"modality": "ECG", "priority": "URGENT", "site": null}' in page
    order = re.findall(r'<tr id="task-(\d+)"', supervisor.get("/worklist").get_data(as_text=True))
    assert [int(task_id) for task_id in order] == [lijia.id, ct.id, xihe.id]  # by deadline


def test_the_script_gets_the_row_details_the_api_does_not_carry_for_visible_tasks_only(
    alliance: Alliance, browser
) -> None:
    ct = alliance.study(CT, "DG_CT")
    ecg = alliance.study(ECG, "XH_ECG", SpecificCharacterSet="ISO_IR 192", PatientName="Wang^Fang=王^芳")
    details = browser("reader-ecg").get(f"/worklist/details?task={ct.id}&task={ecg.id}&task=x").json
    assert details == {str(ecg.id): {"patient": "王芳", "sex_age": "女 · 42岁", "description": "ECG", "held_since": ""}}
    english = browser("supervisor").get(f"/worklist/details?task={ecg.id}&lang=en").json
    assert english[str(ecg.id)]["patient"] == "Wang Fang" and english[str(ecg.id)]["sex_age"] == "Female · 42 y"


def test_the_api_answer_the_script_refreshes_from_has_every_field_it_reads(alliance: Alliance, browser) -> None:
    task = alliance.study(CT, "DG_DR", Modality="DX")
    reader = browser("reader-ct")
    alliance.advance(hours=22)  # past the escalation point
    assert reader.api_post(f"/api/v1/tasks/{task.id}/claim", token=csrf_token(reader.get("/worklist"))).status_code == 200
    jobs.sla_sweep()
    answer = browser("reader-ct2").get("/api/v1/worklist", limit="50", offset="0")  # the session cookie suffices
    assert answer.status_code == 200
    item = answer.json["items"][0]
    assert {"task_id", "kind", "state", "study_uid", "priority", "modality", "due_at", "lease_until", "escalated",
            "breached", "reminders_sent"} <= item.keys()
    assert {"name", "name_en"} <= item["site"].keys() and "name" in item["patient"]
    assert {"name", "display_name"} <= item["holder"].keys() and {"name", "display_name"} <= item["assignee"].keys()
    notice = answer.json["notifications"][0]
    assert {"task_id", "kind", "message", "created_at"} <= notice.keys() and notice["kind"] == "escalation"


# --- the station page ----------------------------------------------------------------------------------------


def test_a_station_sees_only_its_own_studies(alliance: Alliance, browser) -> None:
    alliance.study(CT, "DG_CT", PatientName="Dong^Guan")
    alliance.study(ECG, "LIJIA_ECG", PatientName="Li^Jia")  # a village below Dongguan
    xihe_uid = alliance.receive(ECG, "XH_ECG", PatientName="Xi^He")

    dongguan = browser("dongguan")
    own = text_of(dongguan.get("/station", lang="en"))
    assert "Dong Guan" in own and "Li Jia" in own and "Xi He" not in own
    assert "Studies sent by Dongguan Township Health Centre" in own
    hidden = dongguan.get("/station", site="TS-XIHE")
    assert hidden.status_code == 404 and "Xi He" not in text_of(hidden) and xihe_uid not in hidden.get_data(as_text=True)
    assert dongguan.get("/station", site="NOWHERE").status_code == 404
    village = text_of(dongguan.get("/station", site="VIL-LIJIA"))
    assert "Li Jia" in village and "Dong Guan" not in village

    lijia = text_of(browser("lijia").get("/station"))
    assert "Li Jia" in lijia and "Dong Guan" not in lijia
    assert browser("lijia").get("/station", site="TS-DONGGUAN").status_code == 404

    supervisor = browser("supervisor")
    everything = text_of(supervisor.get("/station"))
    assert "Dong Guan" in everything and "Li Jia" in everything and "Xi He" in everything
    only_xihe = supervisor.get("/station", site="TS-XIHE", lang="en")
    assert "Xi He" in text_of(only_xihe) and "Dong Guan" not in text_of(only_xihe)
    assert "webkitdirectory" not in only_xihe.get_data(as_text=True)  # supervisors look; stations upload


def test_the_station_page_follows_a_study_from_received_to_reported(
    alliance: Alliance, browser, sessions: sessionmaker
) -> None:
    uid = alliance.receive(CT, "DG_CT")
    station = browser("dongguan")

    def study_row() -> str:
        page = station.get("/station", lang="en")
        found = re.search(rf'<tr id="study-\d+" data-study-uid="{re.escape(uid)}".*?</tr>', page.get_data(as_text=True), re.S)
        assert found, "the study is not on the station page"
        return found.group(0)

    page = station.get("/station", lang="en").get_data(as_text=True)
    assert "Upload a study folder" in page and "webkitdirectory" in page and "<progress" in page
    row = study_row()
    assert "Received" in row and "still arriving" in row and "Not set yet" in row and "Not reported yet" in row
    assert "Mark urgent" in row and "View report / Print" in row

    task = alliance.complete(uid)
    row = study_row()
    assert "Waiting for a reader" in row and 'class="left later"' in row and "Routine" in row

    marked = station.api_post(f"/api/v1/studies/{uid}/urgency", {"priority": "URGENT"}, token=csrf_token(station.get("/station")))
    assert marked.status_code == 200, marked.get_data(as_text=True)
    row = study_row()
    assert '<span class="priority URGENT">Urgent</span>' in row and 'class="left near"' in row
    assert "Mark urgent" not in row and "Mark emergency" in row

    reader = browser("reader-ct")
    reader.api_post(f"/api/v1/tasks/{task.id}/claim", token=csrf_token(reader.get("/worklist")))
    assert "Being read" in study_row()

    with sessions() as session, session.begin():
        signer = session.scalar(select(User).where(User.name == "reader-ct"))
        mark_signed(session, session.get(ReadingTask, task.id), signer, alliance.now)
    row = study_row()
    assert "Reported" in row and "Report signed" in row and "Mark" not in row and 'class="left' not in row


# --- signing in ----------------------------------------------------------------------------------------------


def test_a_wrong_password_shows_the_error_and_signs_nobody_in(alliance: Alliance, passwords: dict[str, str]) -> None:
    person = Browser(alliance, "10.0.2.1")
    wrong = person.sign_in("reader-ct", passwords["reader-ct"] + "x")
    assert wrong.status_code == 401 and "用户名或密码错误。" in text_of(wrong)
    assert person.get("/worklist").headers["Location"].startswith("/login")
    assert person.sign_in("reader-ct", passwords["reader-ct"]).status_code == 302
    assert person.get("/worklist").status_code == 200


def test_sign_in_is_limited_to_five_attempts_a_minute(
    alliance: Alliance, passwords: dict[str, str], sessions: sessionmaker
) -> None:
    person = Browser(alliance, "10.0.3.1")
    for _attempt in range(5):
        assert person.sign_in("dongguan", "guess").status_code == 401
    limited = person.sign_in("dongguan", passwords["dongguan"])
    assert limited.status_code == 429 and "尝试次数过多" in text_of(limited)
    assert person.get("/station").headers["Location"].startswith("/login")
    with sessions() as session:
        failed = session.scalar(
            select(func.count()).where(AuditEvent.action == "sign_in_failed", AuditEvent.object_id == "dongguan")
        )
    assert failed == 5
    elsewhere = Browser(alliance, "10.0.3.2")  # the limit is per address
    assert elsewhere.sign_in("dongguan", passwords["dongguan"]).status_code == 302


def test_a_session_ends_after_the_configured_minutes(
    alliance: Alliance, passwords: dict[str, str], config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = Browser(alliance, "10.0.4.1")
    signed_in = person.sign_in("reader-ct", passwords["reader-ct"])
    cookie = next(value for value in signed_in.headers.getlist("Set-Cookie") if value.startswith("telerad_session="))
    expires = parsedate_to_datetime(re.search(r"Expires=([^;]+)", cookie).group(1))
    lifetime = timedelta(minutes=config.web.session_minutes)
    assert abs(expires - datetime.now(UTC) - lifetime) < timedelta(seconds=30)
    assert person.get("/worklist").status_code == 200

    # the same session, signed as long ago as the lifetime allows and a little more
    app = alliance.client.application
    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    stored = person.client.get_cookie("telerad_session")
    content = serializer.loads(stored.value)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(datetime.now(UTC).timestamp() - lifetime.total_seconds() - 5))
    old = serializer.dumps(content)
    monkeypatch.undo()
    person.client.set_cookie("telerad_session", old, domain=stored.domain, path=stored.path)
    assert person.get("/worklist").headers["Location"].startswith("/login")


# --- in a real browser (Debian's Chromium through Playwright: the page scripts run) ---------------------------

NO_ICON = [r"/favicon\.ico$"]  # the frame declares no icon, so Chromium asks for one


def test_in_a_browser_the_worklist_refreshes_itself_and_claim_and_open_goes_to_the_viewer(
    alliance: Alliance, live_server, watched
) -> None:
    from playwright.sync_api import expect

    first = alliance.study(CT, "DG_CT", PatientName="First^Study")
    page = watched.page
    sign_in(page, live_server.url, "reader-ct", live_server.passwords["reader-ct"], "/worklist?lang=en")
    expect(page.locator(f"#task-{first.id}")).to_contain_text("First Study")
    expect(page.locator(f"#task-{first.id} .left")).to_have_attribute("data-due", first.due_at.isoformat())
    page.evaluate("window.notReloaded = true")

    second = alliance.study(CT, "DG_DR", Modality="DX", PatientName="Second^Study")
    page.evaluate("window.dispatchEvent(new Event('focus'))")  # as when the reader comes back to the window
    row = page.locator(f"#task-{second.id}")
    expect(row).to_contain_text("Second Study")
    expect(row).to_contain_text("Other sex")  # from the page's own details, which the API does not carry
    assert page.evaluate("window.notReloaded") is True
    watched.screenshot("worklist")
    watched.assert_clean(NO_ICON)

    page.locator(f"#task-{first.id} button", has_text="Claim and open").click()
    expect(page).to_have_url(re.compile(rf"/studies/{re.escape(first.study_uid)}$"))
    assert alliance.task(first.study_uid).state == "claimed"


def test_in_a_browser_a_station_uploads_a_folder_by_stow_and_marks_it_urgent(
    alliance: Alliance, live_server, watched, tmp_path
) -> None:
    from playwright.sync_api import expect

    folder = tmp_path / "exam"
    study_uid = "1.2.826.0.1.3680043.8.498.1"
    for name in ("IM0001", "IM0002", "IM0003"):
        copy_with_new_uids(CT, folder, name, StudyInstanceUID=study_uid, PatientName="Up^Loaded")
    (folder / "IM0003").write_bytes((folder / "IM0003").read_bytes()[:400])  # DICOM, but cut short
    (folder / "notes.txt").write_text("not an image\n" * 20)

    page = watched.page
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, live_server.url, "dongguan", live_server.passwords["dongguan"], "/station")
    expect(page.locator("body[data-ready=true]")).to_have_count(1)  # the page's script listens for the folder
    page.locator("#folder").set_input_files(folder)
    summary = page.locator("#upload-summary")
    expect(summary).to_contain_text("已保存：2 个文件")
    expect(summary).to_contain_text("失败：1 个文件")
    expect(summary).to_contain_text("IM0003 — 服务器无法读取这个文件。")
    expect(summary).to_contain_text("已跳过 1 个非 DICOM 文件。")
    expect(page.locator(".progress-label")).to_have_text("100%")

    row = page.locator(f'tr[data-study-uid="{study_uid}"]')  # the list refreshed by itself
    expect(row).to_contain_text("Up Loaded")
    expect(row).to_contain_text("2 幅图像")
    row.locator("button", has_text="标为加急").click()
    expect(page.locator("#message")).to_have_text("已标为加急。")
    expect(row.locator(".priority")).to_have_text("加急")
    watched.screenshot("station")
    watched.assert_clean(NO_ICON)
