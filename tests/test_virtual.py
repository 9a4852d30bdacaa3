"""Starting a virtual board (testbed/virtual.py) whatever the process does: a board that never
says where its link is costs the timeout, not a hang."""

from __future__ import annotations

import os
import resource
import subprocess
import time

import pytest

import fleetvote.testbed.virtual as virtual
from fleetvote.errors import ConfigError
from fleetvote.testbed.processes import stop_process
from fleetvote.testbed.virtual import start_board


def _script(tmp_path, body: str):
    path = tmp_path / "board"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("body,says", [
    ("exec sleep 30", "said nothing within 0.5 s"),
    ("printf 'pty /dev/pts/9'; exec sleep 30", "wrote 'pty /dev/pts/9' and no end of line"),
], ids=["silent", "half a line"])
def test_a_board_that_never_writes_its_first_line_fails_within_the_timeout_and_is_stopped(tmp_path, body, says,
                                                                                            monkeypatch):
    started = []
    real = virtual.subprocess.Popen

    def popen(*args, **kw):
        started.append(real(*args, **kw))
        return started[-1]

    monkeypatch.setattr(virtual.subprocess, "Popen", popen)
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match="did not start") as refused:
        start_board("m0", "silent", binary=_script(tmp_path, body), timeout=0.5)
    assert time.monotonic() - t0 < 5  # the timeout and the stop's grace, not the 30 s the board sleeps
    assert says in str(refused.value)
    assert started[0].poll() is not None  # stopped, not left running


def test_a_board_that_exits_at_once_reports_what_it_said_on_stderr(tmp_path):
    with pytest.raises(ConfigError, match="no such model m0"):
        start_board("m0", "dead", binary=_script(tmp_path, "echo 'no such model m0' >&2; exit 2"), timeout=5)


def test_a_board_that_says_where_its_link_is_is_taken_at_its_word(tmp_path):
    board = start_board("m0", "ok", binary=_script(tmp_path, "echo 'tcp 127.0.0.1:5999'; exec sleep 30"), timeout=5)
    try:
        assert board.kind == "tcp" and board.url == "socket://127.0.0.1:5999"
    finally:
        stop_process(board.process)


# descriptors this test needs at least: past select's FD_SETSIZE (1024), plus room for the pipes
FDS_NEEDED = 1100


def test_a_board_started_when_the_service_holds_over_1024_descriptors_is_still_read(tmp_path):
    """A service that has restarted boards under load (bench_hotplug) holds descriptors numbered
    past 1024, where ``select.select`` raises ValueError: the board's first line is read anyway."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FDS_NEEDED:
        if os.environ.get("CI") == "true":  # CI must run it, not skip it
            pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {FDS_NEEDED}: raise it (ulimit -Hn) on the CI runner")
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {FDS_NEEDED}")
    if soft != resource.RLIM_INFINITY and soft < FDS_NEEDED:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FDS_NEEDED, hard))
    held = []
    try:
        while not held or held[-1] < 1030:  # the lowest free descriptors taken: the pipe's come after
            held.append(os.open(os.devnull, os.O_RDONLY))
        proc = subprocess.Popen(["sh", "-c", "echo 'tcp 127.0.0.1:5999'; exec sleep 30"], stdout=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        try:
            assert proc.stdout.fileno() >= 1024
            assert virtual.first_line(proc, 5) == ("tcp 127.0.0.1:5999", "line")
        finally:
            stop_process(proc)
            proc.stdout.close()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
