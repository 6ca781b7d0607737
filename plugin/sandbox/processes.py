"""Watching, finding and stopping the sandbox server processes (HAPI, Orthanc, the sandbox EHR).

Two records say which servers are ours. A pid file per server, in its state folder. And, when
`SANDBOX_SERVER_LEDGER` names a folder (the test session sets it), one ledger entry per
server started, so whoever set it can stop every server started under it, even ones a command
forgot, and a later run can reclaim the servers of a run that was killed before it could.
Which server holds a port is found from the command lines in /proc: a server is "the one we
would start" when its command line is exactly the one we would run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from plugin.errors import SandboxError

LEDGER_ENV = "SANDBOX_SERVER_LEDGER"  # not CHARTLIGHT_*: that prefix is for settings
PROC = Path("/proc")


@dataclass(frozen=True)
class ServerProcess:
    """A running process and the command line it was started with."""

    pid: int
    argv: tuple[str, ...]


def alive(pid: int) -> bool:
    try:
        # Reaps the server if this process started it and it has exited.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child; its parent (or init) reaps it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # A zombie nobody has reaped yet (container inits often do not) is not running.
        state = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def send_signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.kill(pid, signum)


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def command_line(pid: int) -> tuple[str, ...] | None:
    """The process's argv, or None when it is gone (or /proc is not there to ask)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0")[:-1]) or None


def find_processes(matches: Callable[[tuple[str, ...]], bool]) -> list[ServerProcess]:
    """Every live process whose command line `matches`; empty where there is no /proc."""
    found = []
    for entry in PROC.glob("[0-9]*"):
        argv = command_line(int(entry.name))
        if argv and matches(argv) and alive(int(entry.name)):
            found.append(ServerProcess(int(entry.name), argv))
    return sorted(found, key=lambda p: p.pid)


def config_hash(argv: Iterable[str]) -> str:
    """A short hash of a server's command line (its whole configuration, or the path of it)."""
    return hashlib.sha256(json.dumps(list(argv)).encode()).hexdigest()[:12]


def spawn_detached(argv: list[str], *, log_file: Path, pid_file: Path,
                   env: dict[str, str] | None = None) -> int:
    """Start `argv` in its own session (Ctrl-C in the terminal that started it does not reach
    it), stdin from /dev/null, stdout and stderr into `log_file`; its pid goes into `pid_file`
    and, when $SANDBOX_SERVER_LEDGER is set, into that ledger.
    posix_spawn rather than Popen: the server outlives the call, and a Popen object dropped
    while its child runs raises ResourceWarning (an error under our pytest configuration)."""
    pid = os.posix_spawn(
        argv[0], argv, dict(os.environ) if env is None else env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log_file), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )
    pid_file.write_text(f"{pid}\n")
    ledger = os.environ.get(LEDGER_ENV)
    if ledger:
        record(Path(ledger), ServerProcess(pid, tuple(argv)))
    return pid


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in `pid_file`, if that process is alive and its command line holds `marker`: a
    stale pid file must not make us signal an unrelated process that reused the pid."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if not alive(pid):
        return None
    argv = command_line(pid)
    if argv is None:
        return pid  # no /proc to check against: trust the pid file
    return pid if any(marker in part for part in argv) else None


def stop_process(pid: int, *, name: str, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL after `timeout_s`; SandboxError if even that does not end it."""
    send_signal(pid, signal.SIGTERM)
    if not wait_gone(pid, timeout_s):
        send_signal(pid, signal.SIGKILL)
        if not wait_gone(pid, 10):
            raise SandboxError(f"{name} (pid {pid}) survived SIGKILL")


def keep_or_stop(name: str, holders: list[ServerProcess], expected: list[str], *,
                 timeout_s: float, say: Callable[[str], None]) -> bool:
    """Of our servers holding a port, keep the one started exactly as we would start it (True)
    and stop the others, saying why (a different upstream, port, build or configuration)."""
    kept = False
    for holder in holders:
        if list(holder.argv) == expected and not kept:
            kept = True
            continue
        say(f"{name} (pid {holder.pid}, config {config_hash(holder.argv)}) is not the one this "
            f"command starts (config {config_hash(expected)}): restarting it")
        stop_process(holder.pid, name=name, timeout_s=timeout_s)
    return kept


# ---- the ledger of servers started under one owner (a test session) ---------------------------


def record(ledger: Path, server: ServerProcess) -> None:
    ledger.mkdir(parents=True, exist_ok=True)
    (ledger / f"{server.pid}.json").write_text(json.dumps({"pid": server.pid, "argv": server.argv}))


def recorded(ledger: Path) -> list[ServerProcess]:
    """The ledger's servers that still run as they were started (a reused pid is not one)."""
    servers = []
    for entry in sorted(ledger.glob("*.json")):
        try:
            data = json.loads(entry.read_text())
            server = ServerProcess(int(data["pid"]), tuple(data["argv"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if alive(server.pid) and command_line(server.pid) == server.argv:
            servers.append(server)
    return servers


def stop_recorded(ledger: Path, *, timeout_s: float = 60) -> list[ServerProcess]:
    """Stop every server in the ledger that still runs; returns those it stopped."""
    stopped = recorded(ledger)
    for server in stopped:
        stop_process(server.pid, name=Path(server.argv[0]).name, timeout_s=timeout_s)
    return stopped


def owner_alive(owner_dir: Path) -> bool:
    """A ledger folder is named `<owner pid>-<owner start time>`; a reused pid is not the owner."""
    try:
        pid, started = owner_dir.name.split("-", 1)
        return alive(int(pid)) and process_start_time(int(pid)) == started
    except ValueError:
        return False


def process_start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), "" if unknown."""
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""
