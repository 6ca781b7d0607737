"""Watching and stopping the sandbox server processes (HAPI, Orthanc, the sandbox EHR) by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from plugin.errors import SandboxError


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
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
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


def spawn_detached(argv: list[str], *, log_file: Path, pid_file: Path,
                   env: dict[str, str] | None = None) -> int:
    """Start `argv` in its own session (Ctrl-C in the terminal that started it does not reach
    it), stdin from /dev/null, stdout and stderr into `log_file`; its pid goes into `pid_file`.
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
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid  # no /proc to check against: trust the pid file
    return pid if marker.encode() in cmdline else None


def stop_process(pid: int, *, name: str, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL after `timeout_s`; SandboxError if even that does not end it."""
    send_signal(pid, signal.SIGTERM)
    if not wait_gone(pid, timeout_s):
        send_signal(pid, signal.SIGKILL)
        if not wait_gone(pid, 10):
            raise SandboxError(f"{name} (pid {pid}) survived SIGKILL")
