"""Child processes and loopback ports, for every part of the test bed that starts something.

Processes are stopped by PID, never by name: ``terminate`` (SIGTERM, then SIGKILL after a grace
period) and ``stop_process`` (the same, and the pipes closed). ``pids_alive`` says which of some
PIDs still run; ``free_port`` gives a TCP port that is free on the loopback interface now."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

LOOPBACK = "127.0.0.1"


def terminate(proc: subprocess.Popen, timeout: float = 3.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def stop_process(proc: subprocess.Popen, timeout: float = 3.0) -> None:
    """terminate() and close the pipes we held to it."""
    terminate(proc, timeout)
    for f in (proc.stdout, proc.stderr):
        if f:
            try:
                f.close()
            except OSError:  # a drain thread may still be reading it (QEMU boards)
                pass


def pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    return alive


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
