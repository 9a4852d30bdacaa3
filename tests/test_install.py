"""The one install step (tests/debian-packages.sh), driven with a fake dpkg-query and id on PATH:
what it installs, what it tells a user without root, and that CI never goes on without a tool."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import ROOT

SCRIPT = ROOT / "tests" / "debian-packages.sh"


def fake_bin(tmp_path, installed: set[str], uid: int):
    """dpkg-query that knows only `installed`; id that says `uid`; apt-get that records its call."""
    b = tmp_path / "bin"
    b.mkdir(exist_ok=True)
    (b / "dpkg-query").write_text("#!/bin/sh\n" + "".join(
        f'[ "$3" = "{p}" ] && {{ printf "install ok installed"; exit 0; }}\n' for p in sorted(installed))
        + "exit 1\n")
    (b / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (b / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/apt.log\n')
    for f in b.iterdir():
        f.chmod(0o755)
    return b


def run(tmp_path, which: str, installed: set[str], uid: int, **env):
    b = fake_bin(tmp_path, installed, uid)
    e = {"PATH": f"{b}:/usr/bin:/bin", **env}
    return subprocess.run(["bash", str(SCRIPT), which], capture_output=True, text=True, env=e)


def listed(which: str) -> list[str]:
    return subprocess.run(["bash", str(SCRIPT), which, "--list"], capture_output=True, text=True,
                          check=True).stdout.split()


def test_the_test_set_names_every_package_a_test_needs_and_the_runtime_set_only_what_serving_needs():
    run_set, test_set = listed("run"), listed("test")
    assert {"python3-venv", "gcc", "make"} <= set(run_set)
    assert set(run_set) < set(test_set)
    # libclang-rt-14-dev is only recommended by clang: apt --no-install-recommends skips it
    for pkg in ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm", "clang",
                "libclang-rt-14-dev", "chromium", "chromium-driver", "ser2net"):
        assert pkg in test_set and pkg not in run_set


def test_nothing_missing_installs_nothing(tmp_path):
    r = run(tmp_path, "test", set(listed("test")), 0)
    assert r.returncode == 0 and not (tmp_path / "apt.log").exists()


def test_root_installs_exactly_what_is_missing_without_recommends(tmp_path):
    have = set(listed("test")) - {"libclang-rt-14-dev", "ser2net"}
    r = run(tmp_path, "test", have, 0)
    assert r.returncode == 0, r.stderr
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls[0].startswith("update")
    assert calls[1].split()[-2:] == ["libclang-rt-14-dev", "ser2net"] and "--no-install-recommends" in calls[1]


def test_a_user_without_root_is_told_the_command_and_stopped_unless_deps_skip(tmp_path):
    have = set(listed("run")) - {"python3-venv"}
    r = run(tmp_path, "run", have, 1000)
    assert r.returncode == 2 and not (tmp_path / "apt.log").exists()
    assert "sudo apt-get install -y -q --no-install-recommends python3-venv" in r.stderr
    r = run(tmp_path, "run", have, 1000, DEPS="skip")
    assert r.returncode == 0 and "going on without them" in r.stderr


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_missing_package_is_a_failure_even_with_deps_skip(tmp_path, ci):
    r = run(tmp_path, "test", set(listed("run")), 1000, DEPS="skip", CI=ci)
    assert r.returncode == 2 and "chromium" in r.stderr
