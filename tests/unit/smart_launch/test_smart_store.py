"""Server-side SMART state: launches are single-use and expire; tokens are encrypted at rest and
rotate with compare-and-set."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sqlalchemy import create_engine, text

from smart_launch.store import PendingLaunch, SessionRecord, SmartStore, secret_hash


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _store(tmp_path: Path, clock: Clock, material: bytes = b"secret") -> SmartStore:
    return SmartStore(create_engine(f"sqlite:///{tmp_path}/smart.db"), material, clock=clock)


def _launch(expires_at: float) -> PendingLaunch:
    return PendingLaunch(ehr="e", iss="https://e.org/fhir", redirect_uri="https://app/smart/callback",
                         code_verifier="v" * 43, nonce="n" * 43, expires_at=expires_at,
                         browser_binding=secret_hash("browser"))


def _session(expires_at: float = 5000.0) -> SessionRecord:
    return SessionRecord(
        id=secret_hash("cookie"), ehr="e", fhir_base="https://e.org/fhir", token_endpoint="https://e.org/token",
        patient_id="p1", encounter_id=None, user="Practitioner/1", scopes="launch patient/Patient.r",
        need_patient_banner=True, smart_style_url=None, csrf_token="csrf", access_token="ACCESS-SECRET",
        refresh_token="REFRESH-SECRET", access_expires_at=1300.0, expires_at=expires_at, version=1)


def test_a_launch_is_taken_once(tmp_path: Path) -> None:
    store = _store(tmp_path, Clock())
    store.put_launch("state-1", _launch(expires_at=2000))
    taken = store.take_launch("state-1")
    assert taken == _launch(expires_at=2000)
    assert store.take_launch("state-1") is None
    assert store.take_launch("other") is None


def test_an_expired_launch_is_refused(tmp_path: Path) -> None:
    clock = Clock()
    store = _store(tmp_path, clock)
    store.put_launch("state-1", _launch(expires_at=1100))
    clock.now = 1101
    assert store.take_launch("state-1") is None


def test_secrets_are_not_stored_in_the_clear(tmp_path: Path) -> None:
    store = _store(tmp_path, Clock())
    store.put_launch("STATE-SECRET", replace(_launch(2000), code_verifier="VERIFIER-SECRET-" + "x" * 27))
    store.create_session(_session())
    dump = "\n".join(str(row) for table in ("chartlight_smart_launch", "chartlight_smart_session")
                     for row in store.engine.connect().execute(text(f"select * from {table}")))  # noqa: S608
    for secret in ("STATE-SECRET", "VERIFIER-SECRET", "ACCESS-SECRET", "REFRESH-SECRET", "cookie"):
        assert secret not in dump
    assert store.get_session(secret_hash("cookie")) == _session()


def test_sessions_expire_and_need_the_same_key(tmp_path: Path) -> None:
    clock = Clock()
    store = _store(tmp_path, clock)
    store.create_session(_session(expires_at=1500))
    assert _store(tmp_path, clock, material=b"another secret").get_session(secret_hash("cookie")) is None
    clock.now = 1501
    assert store.get_session(secret_hash("cookie")) is None


def test_rotation_is_compare_and_set(tmp_path: Path) -> None:
    store = _store(tmp_path, Clock())
    store.create_session(_session())
    seen = store.get_session(secret_hash("cookie"))
    assert seen is not None
    assert store.rotate_tokens(seen, access_token="A2", refresh_token="R2", access_expires_at=1600,
                               scopes="s")
    # A second refresh based on the old version loses: the first one's tokens stay.
    assert not store.rotate_tokens(seen, access_token="A3", refresh_token="R3", access_expires_at=1700,
                                   scopes="s")
    now = store.get_session(secret_hash("cookie"))
    assert now is not None and (now.access_token, now.refresh_token, now.version) == ("A2", "R2", 2)


def test_a_standalone_launch_is_remembered_as_one(tmp_path: Path) -> None:
    store = _store(tmp_path, Clock())
    store.put_launch("s1", replace(_launch(2000.0), standalone=True))
    store.put_launch("s2", _launch(2000.0))
    taken, other = store.take_launch("s1"), store.take_launch("s2")
    assert taken is not None and taken.standalone and other is not None and not other.standalone


def test_a_session_table_of_an_earlier_version_gets_the_new_columns(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/smart.db")
    with engine.begin() as db:  # the table as the first release made it
        db.execute(text(
            "CREATE TABLE chartlight_smart_session (id VARCHAR(64) PRIMARY KEY, ehr VARCHAR(200),"
            " fhir_base TEXT, token_endpoint TEXT, patient_id VARCHAR(200), encounter_id VARCHAR(200),"
            " user VARCHAR(300), scopes TEXT, need_patient_banner BOOLEAN, smart_style_url TEXT,"
            " csrf_token VARCHAR(100), access_enc TEXT, refresh_enc TEXT, access_expires_at FLOAT,"
            " expires_at FLOAT, version INTEGER)"))
    store = SmartStore(engine, b"secret", clock=Clock())
    record = replace(_session(), fhir_context=("DocumentReference/5", "Encounter/2"),
                     requested_scopes="launch patient/Patient.r patient/Observation.crus")
    store.create_session(record)
    found = store.get_session(record.id)
    assert found is not None and found.fhir_context == record.fhir_context
    assert found.requested_scopes == record.requested_scopes
