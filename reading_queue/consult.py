"""Provincial consults (会诊): a reader asks the province; the answer joins the same report."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reading_queue.assignment import route
from reading_queue.tasks import ReadingTask, TaskState, centre_for, due, next_milestone, record
from telerad.config import ReadingSection
from telerad.users import User


ANSWER_MODES = ("co-sign", "addendum")


class ConsultError(Exception):
    """A consult cannot be asked or answered as requested; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def request_consult(
    session: Session, policy: ReadingSection, task: ReadingTask, reader: User, question: str, at: datetime
) -> ReadingTask:
    """Create a consult task at the province, linked to ``task``, with its own deadline."""
    if task.kind != "read" or task.holder_id != reader.id:
        raise ConsultError(409, "only the reader holding a reading task can ask for a consult")
    if not question.strip():
        raise ConsultError(400, "say what the consultant should look at")
    province = centre_for(session, task.centre_site_id, "province")
    number = session.scalar(select(func.count()).where(ReadingTask.parent_id == task.id)) + 1
    consult = ReadingTask(
        dedupe_key=f"consult:{task.id}:{number}",
        kind="consult",
        parent_id=task.id,
        study_pk=task.study_pk,
        study_uid=task.study_uid,
        service=task.service,
        modality=task.modality,
        source_site_id=task.source_site_id,
        centre_site_id=province.id,
        priority=task.priority,
        priority_source="consult",
        opened_at=at,
        due_at=due(policy, "consult", task.priority, at),
        state=TaskState.OPEN,
        reminders_sent=0,
    )
    consult.next_check_at = next_milestone(policy, consult)
    session.add(consult)
    session.flush()
    record(session, task, "consult_requested", reader.name, consult_task_id=consult.id, question=question)
    record(session, consult, "created", reader.name, parent_task_id=task.id, question=question)
    route(session, policy, consult, province.code, at)
    return consult


def answer_consult(session: Session, consult: ReadingTask, consultant: User, answer: str, mode: str, at: datetime) -> None:
    """Record the consultant's answer (``co-sign`` or ``addendum``) on both timelines and close the consult."""
    if consult.kind != "consult" or consult.holder_id != consultant.id:
        raise ConsultError(409, "only the consultant holding this consult can answer it")
    if mode not in ANSWER_MODES:
        raise ConsultError(400, "answer as co-sign or addendum")
    consult.state, consult.signed_at, consult.signed_by_id = TaskState.SIGNED, at, consultant.id
    consult.holder_id, consult.lease_until, consult.next_check_at = None, None, None
    record(session, consult, "consult_answered", consultant.name, mode=mode, answer=answer)
    parent = session.get(ReadingTask, consult.parent_id)
    record(session, parent, "consult_answered", consultant.name, consult_task_id=consult.id, mode=mode, answer=answer)
