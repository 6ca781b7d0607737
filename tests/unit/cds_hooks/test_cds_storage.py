"""Turn-taking of SQLite writers across threads and worker processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from cds_hooks.storage import WriterTurn, cds_engine, writer_turn

# Tries the writer lock without waiting: exit status 0 when it was free.
PROBE = ("import fcntl, os, sys\n"
         "fd = os.open(sys.argv[1], os.O_RDWR)\n"
         "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
         "except BlockingIOError:\n    sys.exit(3)\n")


def probe(path: Path) -> int:
    return subprocess.run([sys.executable, "-c", PROBE, str(path)], check=False).returncode


def test_another_process_waits_for_the_turn(tmp_path: Path) -> None:
    turn = writer_turn(cds_engine(f"sqlite:///{tmp_path}/cds.db"))
    lock_file = tmp_path / "cds.db.writer-lock"
    with turn:
        assert probe(lock_file) == 3  # held: another worker process would wait
    assert probe(lock_file) == 0


def test_threads_take_turns(tmp_path: Path) -> None:
    turn = WriterTurn(tmp_path / "x.writer-lock")
    inside, overlaps = [0], [0]

    def write() -> None:
        for _ in range(50):
            with turn:
                inside[0] += 1
                overlaps[0] += inside[0] > 1
                time.sleep(0.0005)
                inside[0] -= 1

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps[0] == 0


def test_in_memory_and_server_databases_need_no_lock_file(tmp_path: Path) -> None:
    with writer_turn(cds_engine("sqlite://")):
        pass
    assert list(tmp_path.iterdir()) == []
