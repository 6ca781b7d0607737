"""Feedback on cards (CDS Hooks 2.0.1, Feedback): stored once per card, outcome and time, so the
duplicates and batches EHRs send are harmless; summed up per service for the report."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from cds_hooks.models import FeedbackItem


class _Base(DeclarativeBase):
    pass


class _FeedbackRow(_Base):
    __tablename__ = "chartlight_cds_feedback"
    __table_args__ = (UniqueConstraint("card_uuid", "outcome", "outcome_timestamp"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_id: Mapped[str] = mapped_column(String(100), index=True)
    card_uuid: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(20))
    # RFC 3339 in UTC with microseconds: the same instant written two ways is one value.
    outcome_timestamp: Mapped[str] = mapped_column(String(40))
    accepted_suggestions: Mapped[str] = mapped_column(Text, default="[]")
    override_system: Mapped[str] = mapped_column(String(300), default="")
    override_code: Mapped[str] = mapped_column(String(100), default="")
    override_display: Mapped[str] = mapped_column(String(300), default="")
    user_comment: Mapped[str] = mapped_column(Text, default="")
    issuer: Mapped[str] = mapped_column(String(300), default="")
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class StoreOutcome:
    stored: int
    duplicates: int


@dataclass(frozen=True)
class ServiceFeedback:
    service_id: str
    cards: int  # distinct cards with any feedback
    accepted: int
    overridden: int
    with_comment: int
    reasons: tuple[tuple[str, int], ...] = field(default=())  # override reason, count; most first


class FeedbackStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        _Base.metadata.create_all(engine)

    def record(self, service_id: str, items: list[FeedbackItem], *, issuer: str,
               now: datetime) -> StoreOutcome:
        stored = duplicates = 0
        for item in items:
            reason = item.overrideReason.reason if item.overrideReason else None
            row = _FeedbackRow(
                service_id=service_id, card_uuid=item.card, outcome=item.outcome,
                outcome_timestamp=item.outcomeTimestamp.astimezone(UTC).isoformat(timespec="microseconds"),
                accepted_suggestions=json.dumps([s.id for s in item.acceptedSuggestions or []]),
                override_system=(reason.system or "") if reason else "",
                override_code=(reason.code or "") if reason else "",
                override_display=(reason.display or "") if reason else "",
                user_comment=(item.overrideReason.userComment or "") if item.overrideReason else "",
                issuer=issuer, received_at=now)
            try:
                with Session(self.engine) as session, session.begin():
                    session.add(row)
                stored += 1
            except IntegrityError:
                duplicates += 1
        return StoreOutcome(stored, duplicates)

    def report(self) -> list[ServiceFeedback]:
        with Session(self.engine) as session:
            rows = session.scalars(select(_FeedbackRow).order_by(_FeedbackRow.service_id)).all()
        by_service: dict[str, list[_FeedbackRow]] = {}
        for row in rows:
            by_service.setdefault(row.service_id, []).append(row)
        report = []
        for service_id, service_rows in by_service.items():
            reasons = Counter(r.override_display or r.override_code for r in service_rows
                              if r.outcome == "overridden" and (r.override_display or r.override_code))
            report.append(ServiceFeedback(
                service_id=service_id, cards=len({r.card_uuid for r in service_rows}),
                accepted=sum(r.outcome == "accepted" for r in service_rows),
                overridden=sum(r.outcome == "overridden" for r in service_rows),
                with_comment=sum(bool(r.user_comment) for r in service_rows),
                reasons=tuple(reasons.most_common())))
        return report
