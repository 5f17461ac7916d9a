"""Reader scorecards (医师质控档案): each reader's volume, turnaround, peer-review agreement and addenda over a period.

For the readers and consultants of a set of sites, over ``[since, until)``:

- ``volume``: the reading tasks they signed (the signer of the report that made the task final:
  ``reading_tasks.signed_at`` and ``reader_id``, as :mod:`reading_queue.turnaround` counts them);
- ``median_minutes``, ``p90_minutes``: from the study's completion to that signature
  (:func:`reading_queue.turnaround.stats_of`), and ``within_deadline_share``, the share signed by the deadline;
- ``reviews_received`` with ``agree``, ``minor`` and ``significant``: the peer reviews of their reports scored in
  the period, and ``agreement_share`` = agree / reviews received;
- ``reviews_done``: the peer reviews they scored in the period;
- ``addenda``: the addenda signed in the period to reports they wrote (by anyone).

A reader who is no longer active is listed only when the period has a figure for them. The supervisors'
dashboard and ``GET /api/v1/scorecards`` show these cards.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reading_queue.turnaround import empty_stats, signatures_by_reader
from reports.models import Report, ReportAddendum
from reports.quality import REVIEWING_ROLES, PeerReview, ReviewState, Score
from telerad.users import User


def scorecards(
    session: Session, centre_ids: set[int], since: datetime, until: datetime,
    signed: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One card per reader and consultant of the sites ``centre_ids`` over ``[since, until)``, by name.

    Each card: ``name``, ``display_name``, ``volume``, ``median_minutes``, ``p90_minutes``,
    ``within_deadline_share``, ``reviews_received``, ``agree``, ``minor``, ``significant``, ``agreement_share``,
    ``reviews_done``, ``addenda`` (minutes rounded to hundredths, shares to 4 places; ``None`` where there is
    nothing to measure).

    ``signed``: each reader's figures to signature over the same period, by user name, when the caller has them
    already (the dashboard's turnaround per reader); otherwise they are computed here.
    """
    readers = session.scalars(
        select(User).where(User.site_id.in_(centre_ids), User.role.in_(REVIEWING_ROLES)).order_by(User.name)
    ).all()
    ids = [reader.id for reader in readers]
    if signed is None:
        names = {reader.id: reader.name for reader in readers}
        signed = {names[reader_id]: stats.as_dict()
                  for reader_id, stats in signatures_by_reader(session, ids, since, until).items()}
    received = _received(session, ids, since, until)
    done = dict(session.execute(
        select(PeerReview.reviewer_id, func.count())
        .where(PeerReview.reviewer_id.in_(ids), PeerReview.state == ReviewState.DONE,
               PeerReview.done_at >= since, PeerReview.done_at < until)
        .group_by(PeerReview.reviewer_id)
    ).all())
    addenda = dict(session.execute(
        select(Report.author_id, func.count())
        .select_from(ReportAddendum)
        .join(Report, Report.id == ReportAddendum.report_id)
        .where(Report.author_id.in_(ids), ReportAddendum.signed_at >= since, ReportAddendum.signed_at < until)
        .group_by(Report.author_id)
    ).all())
    cards = []
    for reader in readers:
        figures = signed.get(reader.name) or empty_stats("signed").as_dict()
        scores = received.get(reader.id, {})
        count = sum(scores.values())
        card = {
            "name": reader.name,
            "display_name": reader.display_name or reader.name,
            "volume": figures["count"],
            "median_minutes": figures["median_minutes"],
            "p90_minutes": figures["p90_minutes"],
            "within_deadline_share": figures["within_deadline_share"],
            "reviews_received": count,
            **{score.value: scores.get(score, 0) for score in Score},
            "agreement_share": round(scores.get(Score.AGREE, 0) / count, 4) if count else None,
            "reviews_done": done.get(reader.id, 0),
            "addenda": addenda.get(reader.id, 0),
        }
        if reader.active or card["volume"] or count or card["reviews_done"] or card["addenda"]:
            cards.append(card)
    return cards


def _received(session: Session, ids: list[int], since: datetime, until: datetime) -> dict[int, dict[str, int]]:
    """Per author, the peer reviews of their reports scored in the period, counted by score."""
    rows = session.execute(
        select(Report.author_id, PeerReview.score, func.count())
        .join(Report, Report.id == PeerReview.report_id)
        .where(Report.author_id.in_(ids), PeerReview.state == ReviewState.DONE,
               PeerReview.done_at >= since, PeerReview.done_at < until)
        .group_by(Report.author_id, PeerReview.score)
    )
    found: dict[int, dict[str, int]] = defaultdict(dict)
    for author_id, score, count in rows:
        found[author_id][score] = count
    return found

