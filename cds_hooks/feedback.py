"""Feedback on cards (CDS Hooks 2.0.1 and 3.0, Feedback): stored once per EHR, card, outcome and
time, so the duplicates and batches EHRs send are harmless; summed up per EHR and service for the
report, override reasons also by their CDS Hooks 3.0 non-adherence category.

Every row names the EHR (JWT issuer) that sent it, and is read only for that EHR: one EHR's
feedback can neither count as another's duplicate nor appear in another's report. Tables created
before the issuer was part of the unique key are migrated in place when the store starts."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint, inspect, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from cds_hooks.models import FeedbackItem
from cds_hooks.override_reasons import CATEGORIES, category_of
from plugin.schema_lock import schema_change

TABLE = "chartlight_cds_feedback"
UNIQUE = ("issuer", "card_uuid", "outcome", "outcome_timestamp")


class _Base(DeclarativeBase):
    pass


class _FeedbackRow(_Base):
    __tablename__ = TABLE
    __table_args__ = (UniqueConstraint(*UNIQUE, name="uq_chartlight_cds_feedback_once"),)

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
    issuer: str  # the EHR that sent it
    service_id: str
    cards: int  # distinct cards with any feedback
    accepted: int
    overridden: int
    with_comment: int
    reasons: tuple[tuple[str, int], ...] = field(default=())  # override reason, count; most first
    # CDS Hooks 3.0 non-adherence category (display), count; most first
    categories: tuple[tuple[str, int], ...] = field(default=())


class FeedbackStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # One transaction under the schema lock: stores starting at once take turns, and the
        # later ones find the table made and migrated (see plugin.schema_lock).
        with schema_change(engine) as connection:
            _upgrade(connection)
            _Base.metadata.create_all(connection)

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

    def report(self, *, issuer: str | None = None) -> list[ServiceFeedback]:
        """Feedback per EHR and service; only `issuer`'s when given."""
        query = select(_FeedbackRow).order_by(_FeedbackRow.issuer, _FeedbackRow.service_id)
        if issuer is not None:
            query = query.where(_FeedbackRow.issuer == issuer)
        with Session(self.engine) as session:
            rows = session.scalars(query).all()
        groups: dict[tuple[str, str], list[_FeedbackRow]] = {}
        for row in rows:
            groups.setdefault((row.issuer, row.service_id), []).append(row)
        report = []
        for (ehr, service_id), service_rows in groups.items():
            overridden = [r for r in service_rows if r.outcome == "overridden"]
            reasons = Counter(r.override_display or r.override_code for r in overridden
                              if r.override_display or r.override_code)
            categories = Counter(CATEGORIES[c] for c in (category_of(r.override_system, r.override_code)
                                                         for r in overridden) if c is not None)
            report.append(ServiceFeedback(
                issuer=ehr, service_id=service_id, cards=len({r.card_uuid for r in service_rows}),
                accepted=sum(r.outcome == "accepted" for r in service_rows),
                overridden=len(overridden),
                with_comment=sum(bool(r.user_comment) for r in service_rows),
                reasons=tuple(reasons.most_common()), categories=tuple(categories.most_common())))
        return report


def _upgrade(connection: Connection) -> None:
    """Make the EHR part of the unique key of a table created without it (keeping its rows)."""
    inspector = inspect(connection)
    if not inspector.has_table(TABLE):
        return
    if any(tuple(u["column_names"]) == UNIQUE for u in inspector.get_unique_constraints(TABLE)):
        return
    if connection.dialect.name == "sqlite":  # SQLite cannot change a table's constraints: rebuild it
        _rebuild(connection, [i["name"] for i in inspector.get_indexes(TABLE) if i["name"]])
        return
    for unique in inspector.get_unique_constraints(TABLE):
        if set(unique["column_names"]) == set(UNIQUE[1:]) and unique["name"]:
            connection.execute(text(f'ALTER TABLE {TABLE} DROP CONSTRAINT "{unique["name"]}"'))
    connection.execute(text(f"ALTER TABLE {TABLE} ADD CONSTRAINT uq_chartlight_cds_feedback_once "
                            f"UNIQUE ({', '.join(UNIQUE)})"))


def _rebuild(connection: Connection, indexes: list[str]) -> None:
    columns = ", ".join(c.name for c in _FeedbackRow.__table__.columns)
    connection.execute(text(f"ALTER TABLE {TABLE} RENAME TO {TABLE}_old"))
    for name in indexes:  # index names are global in SQLite: the new table's would clash
        connection.execute(text(f'DROP INDEX IF EXISTS "{name}"'))
    _Base.metadata.create_all(connection, tables=[_Base.metadata.tables[TABLE]])
    copy = f"INSERT INTO {TABLE} ({columns}) SELECT {columns} FROM {TABLE}_old"  # noqa: S608 -- our own names
    connection.execute(text(copy))
    connection.execute(text(f"DROP TABLE {TABLE}_old"))
