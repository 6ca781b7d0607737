"""Server-side SMART state, in the service's database (`database_url`, beside the jobs):

- pending launches, found by `state` (so the callback works inside an EHR iframe whose cookies
  are dropped): single-use, expiring, with the PKCE verifier;
- sessions, found by the hash of the session cookie: launch context, granted scopes, CSRF token,
  and the access and refresh tokens encrypted at rest (Fernet, key derived from `secret_key` or,
  without one, from the signing key file);
- refresh leases: the one process (of all processes on this database) that may refresh a
  session's tokens now, until its lease ends. An EHR that rotates refresh tokens revokes the old
  one on first use, so two processes refreshing with the same refresh token would log the user
  out (and some EHRs revoke the whole grant on reuse); the others wait and reuse the result. A
  holder that crashed leaves a lease that simply ends.

Secrets are never stored in the clear: state and cookie values are kept as SHA-256 hashes.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Boolean, Float, Integer, String, Text, delete, inspect, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from plugin.schema_lock import schema_change

PRUNE_EVERY_S = 60.0


def secret_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class PendingLaunch:
    ehr: str
    iss: str
    redirect_uri: str
    code_verifier: str
    nonce: str
    expires_at: float
    # Hash of the launching browser's binding cookie; the callback checks it when the cookie
    # comes back (an EHR iframe that drops cookies sends none).
    browser_binding: str = ""
    standalone: bool = False  # a standalone launch (its callback always needs the binding cookie)


@dataclass(frozen=True)
class SessionRecord:
    id: str  # hash of the cookie value
    ehr: str
    fhir_base: str
    token_endpoint: str
    patient_id: str | None
    encounter_id: str | None
    user: str | None
    scopes: str
    need_patient_banner: bool
    smart_style_url: str | None
    csrf_token: str
    access_token: str
    refresh_token: str | None
    access_expires_at: float
    expires_at: float
    version: int
    fhir_context: tuple[str, ...] = ()  # SMART 2.2 fhirContext references ("DocumentReference/5")
    requested_scopes: str = ""  # what the launch asked for (the pages say what was not granted)


class _Base(DeclarativeBase):
    pass


class _Launch(_Base):
    __tablename__ = "chartlight_smart_launch"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    ehr: Mapped[str] = mapped_column(String(200))
    iss: Mapped[str] = mapped_column(Text)
    redirect_uri: Mapped[str] = mapped_column(Text)
    secrets_enc: Mapped[str] = mapped_column(Text)  # code verifier and nonce
    browser_binding: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class _Session(_Base):
    __tablename__ = "chartlight_smart_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ehr: Mapped[str] = mapped_column(String(200))
    fhir_base: Mapped[str] = mapped_column(Text)
    token_endpoint: Mapped[str] = mapped_column(Text)
    patient_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    encounter_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    user: Mapped[str | None] = mapped_column(String(300), nullable=True)
    scopes: Mapped[str] = mapped_column(Text)
    need_patient_banner: Mapped[bool] = mapped_column(Boolean)
    smart_style_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    csrf_token: Mapped[str] = mapped_column(String(100))
    access_enc: Mapped[str] = mapped_column(Text)
    refresh_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    access_expires_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    version: Mapped[int] = mapped_column(Integer)
    # Added after the first release: add_missing_columns puts them into existing tables.
    fhir_context: Mapped[str | None] = mapped_column(Text, nullable=True)
    requested_scopes: Mapped[str | None] = mapped_column(Text, nullable=True)


class _RefreshLease(_Base):
    __tablename__ = "chartlight_smart_refresh_lease"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))  # random per acquisition
    expires_at: Mapped[float] = mapped_column(Float)


LATER_COLUMNS = {"chartlight_smart_session": ("fhir_context", "requested_scopes")}


def add_missing_columns(db: Connection) -> None:
    """Bring a session table made by an earlier version up to date (nullable text columns),
    inside the caller's transaction."""
    inspector = inspect(db)
    for table, columns in LATER_COLUMNS.items():
        if not inspector.has_table(table):
            continue
        present = {c["name"] for c in inspector.get_columns(table)}
        for column in columns:
            if column not in present:
                db.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} TEXT"))


class SmartStore:
    def __init__(self, engine: Engine, key_material: bytes, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self._clock = clock
        self._fernet = Fernet(base64.urlsafe_b64encode(HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None,
            info=b"chartlight smart token store").derive(key_material)))
        self._pruned_at = 0.0
        # One transaction under the schema lock: stores starting at once (several workers)
        # take turns, and the later ones find the tables made and complete (plugin.schema_lock).
        with schema_change(engine) as db:
            _Base.metadata.create_all(db)
            add_missing_columns(db)

    # ---- pending launches ----------------------------------------------------------------------

    def put_launch(self, state: str, launch: PendingLaunch) -> None:
        self._prune()
        with Session(self.engine) as db, db.begin():
            db.add(_Launch(state_hash=secret_hash(state), ehr=launch.ehr, iss=launch.iss,
                           redirect_uri=launch.redirect_uri,
                           secrets_enc=self._seal(f"{launch.code_verifier} {launch.nonce} "
                                                  f"{'standalone' if launch.standalone else 'ehr'}"),
                           browser_binding=launch.browser_binding, expires_at=launch.expires_at))

    def take_launch(self, state: str) -> PendingLaunch | None:
        """The launch for `state`, once: a second call (a replayed callback) gets None."""
        key = secret_hash(state)
        with Session(self.engine) as db, db.begin():
            row = db.get(_Launch, key)
            if row is None:
                return None
            found = PendingLaunch(ehr=row.ehr, iss=row.iss, redirect_uri=row.redirect_uri,
                                  code_verifier="", nonce="", expires_at=row.expires_at,
                                  browser_binding=row.browser_binding)
            sealed = row.secrets_enc
            taken = _rowcount(db.execute(delete(_Launch).where(_Launch.state_hash == key)))
        if taken != 1 or found.expires_at < self._clock():
            return None
        verifier, nonce, *kind = self._open(sealed).split(" ")
        return replace(found, code_verifier=verifier, nonce=nonce, standalone=kind == ["standalone"])

    # ---- sessions --------------------------------------------------------------------------------

    def create_session(self, record: SessionRecord) -> None:
        with Session(self.engine) as db, db.begin():
            db.add(_Session(
                id=record.id, ehr=record.ehr, fhir_base=record.fhir_base,
                token_endpoint=record.token_endpoint,
                patient_id=record.patient_id, encounter_id=record.encounter_id, user=record.user,
                scopes=record.scopes, need_patient_banner=record.need_patient_banner,
                smart_style_url=record.smart_style_url, csrf_token=record.csrf_token,
                access_enc=self._seal(record.access_token),
                refresh_enc=self._seal(record.refresh_token) if record.refresh_token else None,
                access_expires_at=record.access_expires_at, expires_at=record.expires_at,
                version=record.version, fhir_context=" ".join(record.fhir_context),
                requested_scopes=record.requested_scopes))

    def get_session(self, session_id: str) -> SessionRecord | None:
        with Session(self.engine) as db:
            row = db.get(_Session, session_id)
            if row is None or row.expires_at < self._clock():
                return None
            try:
                access = self._open(row.access_enc)
                refresh = self._open(row.refresh_enc) if row.refresh_enc else None
            except InvalidToken:
                return None  # sealed under another key (secret_key changed): log in again
            return SessionRecord(
                id=row.id, ehr=row.ehr, fhir_base=row.fhir_base, token_endpoint=row.token_endpoint,
                patient_id=row.patient_id, encounter_id=row.encounter_id, user=row.user, scopes=row.scopes,
                need_patient_banner=row.need_patient_banner, smart_style_url=row.smart_style_url,
                csrf_token=row.csrf_token, access_token=access, refresh_token=refresh,
                access_expires_at=row.access_expires_at, expires_at=row.expires_at, version=row.version,
                fhir_context=tuple((row.fhir_context or "").split()),
                requested_scopes=row.requested_scopes or "")

    def rotate_tokens(self, record: SessionRecord, *, access_token: str, refresh_token: str | None,
                      access_expires_at: float, scopes: str) -> bool:
        """Store refreshed tokens if nobody else did since `record` was read (compare-and-set on
        the version); False when another worker won the race."""
        with Session(self.engine) as db, db.begin():
            changed = _rowcount(db.execute(
                update(_Session).where(_Session.id == record.id, _Session.version == record.version)
                .values(access_enc=self._seal(access_token),
                        refresh_enc=self._seal(refresh_token) if refresh_token else None,
                        access_expires_at=access_expires_at, scopes=scopes, version=record.version + 1)))
        return bool(changed)

    def delete_session(self, session_id: str) -> None:
        with Session(self.engine) as db, db.begin():
            db.execute(delete(_Session).where(_Session.id == session_id))
            db.execute(delete(_RefreshLease).where(_RefreshLease.session_id == session_id))

    # ---- refresh leases ----------------------------------------------------------------------------

    def try_refresh_lease(self, session_id: str, lease_s: float) -> str | None:
        """Take the session's refresh lease for `lease_s` seconds: a holder id to release it
        with, or None while another process holds a lease that has not ended. Atomic on SQLite
        and PostgreSQL (an insert on the key, else a conditional update of an ended lease)."""
        holder = secrets.token_hex(16)
        now = self._clock()
        try:
            with Session(self.engine) as db, db.begin():
                db.add(_RefreshLease(session_id=session_id, holder=holder, expires_at=now + lease_s))
            return holder
        except IntegrityError:
            pass  # a lease row exists: take it only if it has ended (its holder crashed or is slow)
        with Session(self.engine) as db, db.begin():
            taken = _rowcount(db.execute(
                update(_RefreshLease).where(_RefreshLease.session_id == session_id,
                                            _RefreshLease.expires_at < now)
                .values(holder=holder, expires_at=now + lease_s)))
        return holder if taken == 1 else None

    def release_refresh_lease(self, session_id: str, holder: str) -> None:
        """End our lease (a lease that ended and was taken by another holder is left alone)."""
        with Session(self.engine) as db, db.begin():
            db.execute(delete(_RefreshLease).where(_RefreshLease.session_id == session_id,
                                                   _RefreshLease.holder == holder))

    # ---- internals -------------------------------------------------------------------------------

    def _seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def _open(self, sealed: str) -> str:
        return self._fernet.decrypt(sealed.encode()).decode()

    def _prune(self) -> None:
        now = self._clock()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        with Session(self.engine) as db, db.begin():
            db.execute(delete(_Launch).where(_Launch.expires_at < now))
            db.execute(delete(_Session).where(_Session.expires_at < now))


def _rowcount(result: Any) -> int:
    return int(result.rowcount)  # a CursorResult for DML; typed as plain Result


def new_secret() -> str:
    """256 random bits, URL-safe: state, session cookie, CSRF token, PKCE verifier."""
    return secrets.token_urlsafe(32)
