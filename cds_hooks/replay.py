"""Replay protection: a JWT id (`jti`) is accepted once per issuer until the token expires.

Two stores with one method, `first_use(key, expires_at)`:
- SqlReplayCache: a table in the service's database, so every gunicorn worker process (and
  every host sharing the database) sees every id. The default.
- MemoryReplayCache: a dict in this process. Faster, but a token could be replayed once to each
  other worker process; for single-process deployments and tests.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import Float, String, delete, insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cds_hooks.storage import writer_turn
from plugin.schema_lock import schema_change

PRUNE_EVERY_S = 60.0


class ReplayCache(Protocol):
    def first_use(self, key: str, expires_at: float) -> bool:
        """True the first time `key` is seen before `expires_at` (epoch seconds), else False."""
        ...


def replay_key(issuer: str, jti: str) -> str:
    return hashlib.sha256(f"{issuer}\x00{jti}".encode()).hexdigest()


class MemoryReplayCache:
    def __init__(self, *, max_entries: int = 200_000, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_use(self, key: str, expires_at: float) -> bool:
        now = self._clock()
        with self._lock:
            if key in self._seen and self._seen[key] >= now:
                return False
            if len(self._seen) >= self.max_entries:
                self._seen = {k: exp for k, exp in self._seen.items() if exp >= now}
                if len(self._seen) >= self.max_entries:
                    return False  # full of live ids: refuse rather than forget one
            self._seen[key] = expires_at
            return True


class _Base(DeclarativeBase):
    pass


class _UsedJwt(_Base):
    __tablename__ = "chartlight_cds_used_jwt"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


_INSERT_USED = insert(_UsedJwt)  # built once: the statement compiles once, values bind per call


class SqlReplayCache:
    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self._clock = clock
        self._pruned_at = 0.0
        self._lock = threading.Lock()
        self._writer = writer_turn(engine)
        with schema_change(engine) as connection:  # workers starting at once take turns
            _Base.metadata.create_all(connection)

    def first_use(self, key: str, expires_at: float) -> bool:
        now = self._clock()
        self._prune(now)
        try:
            with self._writer, self.engine.begin() as connection:
                connection.execute(_INSERT_USED, {"key": key, "expires_at": expires_at})
        except IntegrityError:
            # Seen before: a replay, unless that use has expired (then the row is stale).
            with self.engine.begin() as connection:
                renewed = connection.execute(
                    update(_UsedJwt)
                    .where(_UsedJwt.key == key, _UsedJwt.expires_at < now)
                    .values(expires_at=expires_at))
                return bool(renewed.rowcount)
        return True

    def _prune(self, now: float) -> None:
        with self._lock:
            if now - self._pruned_at < PRUNE_EVERY_S:
                return
            self._pruned_at = now
        with self.engine.begin() as connection:
            connection.execute(delete(_UsedJwt).where(_UsedJwt.expires_at < now))
