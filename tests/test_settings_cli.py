"""One vocabulary for configuration: every setting is a `fleetvote serve` flag and a FLEETVOTE_*
variable, lists are repeated flags and comma separated variables, the API key never comes from
argv, `fleetvote --version`; and the logs: ISO 8601 times with the zone in both formats, and the
engine's stand-ins summed up at info instead of one line per member per request."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from conftest import ROOT


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("FLEETVOTE_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("FLEETVOTE_SCAN_USB", "false")  # no catalogue needed for the default usb_ids


def serve_args(*argv: str):
    from fleetvote.cli import build_parser

    return build_parser().parse_args(["serve", *argv])


def settings_of(*argv: str):
    from fleetvote.cli import _settings
    from fleetvote.settings import Settings

    return _settings(Settings, serve_args(*argv))


def test_every_setting_but_the_secret_is_a_serve_flag():
    from fleetvote.settings import LIST_FIELDS, SECRET_FIELDS, Settings

    argv, want = [], {}
    for name, field in Settings.model_fields.items():
        if name in SECRET_FIELDS:
            continue
        flag = "--" + (name[:-1] if name in LIST_FIELDS else name).replace("_", "-")
        if field.annotation is bool:
            argv.append(flag if not field.default else "--no-" + flag[2:])
            want[name] = not field.default
        elif name in LIST_FIELDS:
            items = ["0483:374B", "0483:3752"] if name == "usb_ids" else [f"{name}-a", f"{name}-b"]
            argv += [flag, items[0], flag, items[1]]  # repeated, in the singular
            want[name] = items
        else:
            argv += [flag, "7"]
    ns = serve_args(*argv)
    got = {name: getattr(ns, f"setting_{name}") for name in Settings.model_fields if name not in SECRET_FIELDS}
    assert all(v is not None for v in got.values()), [k for k, v in got.items() if v is None]
    for name, v in want.items():
        assert got[name] == v, name
    assert sorted(Settings.model_fields) == sorted([*got, *SECRET_FIELDS])


def test_flags_become_settings_and_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("FLEETVOTE_QUEUE_SIZE", "5")
    monkeypatch.setenv("FLEETVOTE_URLS", "/dev/ttyACM0,socket://h:7000")
    s = settings_of()
    assert s.queue_size == 5 and s.urls == ["/dev/ttyACM0", "socket://h:7000"]
    s = settings_of("--queue-size", "3", "--url", "socket://a:1", "--url", "socket://b:2", "--no-fallback",
                    "--deadline-ms", "250", "--link-glob", "run/qemu/board*")
    assert s.queue_size == 3 and s.urls == ["socket://a:1", "socket://b:2"] and s.fallback is False
    assert s.deadline_ms == 250.0 and s.link_globs == ["run/qemu/board*"]  # the flag replaces, like the variable


@pytest.mark.parametrize("text, want", [
    ("a,b", ["a", "b"]), (" a , b ,", ["a", "b"]), ("", []), ("socket://h:7000", ["socket://h:7000"]),
    ('["a", "b"]', ["a", "b"]), ("[]", []),  # a JSON list, as the compose file has it, still reads
])
def test_list_variables_are_comma_separated(monkeypatch, text, want):
    from fleetvote.settings import Settings

    monkeypatch.setenv("FLEETVOTE_LINK_GLOBS", text)
    assert Settings().link_globs == want


def test_a_bad_setting_is_a_clear_error_that_never_shows_the_key(monkeypatch, capsys):
    from fleetvote.cli import main

    monkeypatch.setenv("FLEETVOTE_API_KEY", "sup3rsecret")
    with pytest.raises(SystemExit) as exit_:  # not a number: refused as the flags are read
        main(["serve", "--port", "http"])
    assert exit_.value.code == 2 and "--port: invalid int value" in capsys.readouterr().err
    assert main(["serve", "--port", "99999", "--queue-size", "0"]) == 2
    err = capsys.readouterr().err
    assert "error: invalid settings" in err and "port" in err and "queue_size" in err
    assert "sup3rsecret" not in err and "Traceback" not in err
    monkeypatch.setenv("FLEETVOTE_LINK_GLOBS", "[not json")
    assert main(["serve"]) == 2
    assert "comma separated" in capsys.readouterr().err


def test_the_api_key_is_refused_on_argv_and_read_from_the_environment_or_a_file(monkeypatch, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        serve_args("--api-key", "s3cret")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "FLEETVOTE_API_KEY" in err and "--api-key-file" in err
    with pytest.raises(SystemExit) as exit_:  # the admin key neither, and its value is never echoed
        serve_args("--admin-key", "adm1n-s3cret")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "FLEETVOTE_ADMIN_KEY" in err and "adm1n-s3cret" not in err
    key = tmp_path / "key"
    key.write_text("k-from-file\n")
    assert settings_of("--api-key-file", str(key)).api_key == "k-from-file"
    monkeypatch.setenv("FLEETVOTE_API_KEY_FILE", str(key))
    assert settings_of().api_key == "k-from-file"
    assert "k-from-file" not in repr(settings_of())
    monkeypatch.setenv("FLEETVOTE_API_KEY", "k-env")
    with pytest.raises(Exception, match="give the key one way"):
        settings_of()
    monkeypatch.delenv("FLEETVOTE_API_KEY_FILE")
    assert settings_of().api_key == "k-env"
    key.write_text("")
    monkeypatch.delenv("FLEETVOTE_API_KEY")
    with pytest.raises(Exception, match="is empty"):
        settings_of("--api-key-file", str(key))
    with pytest.raises(Exception, match="cannot read the API key file"):
        settings_of("--api-key-file", str(tmp_path / "missing"))


def test_version_flag_prints_the_package_version():
    from fleetvote import __version__

    p = subprocess.run([sys.executable, "-m", "fleetvote.cli", "--version"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == f"fleetvote {__version__}"


# ---- logs ----------------------------------------------------------------------------------------

def one_line(json_lines: bool) -> str:
    from fleetvote import logs

    record = logging.LogRecord("fleetvote.test", logging.INFO, __file__, 1, "hello", (), None)
    record.board_id = "00ff"
    return (logs.JsonFormatter() if json_lines else logs.TextFormatter()).format(record)


@pytest.mark.parametrize("json_lines", [False, True])
def test_both_log_formats_carry_an_iso_8601_time_with_its_zone(json_lines):
    line = one_line(json_lines)
    stamp = json.loads(line)["ts"] if json_lines else line.split(" ", 1)[0]
    t = datetime.fromisoformat(stamp)
    assert t.utcoffset() == timedelta(0) and stamp.endswith("+00:00")
    assert abs((datetime.now(timezone.utc) - t).total_seconds()) < 60
    assert "board_id" in line and "00ff" in line


def test_summary_logs_the_first_event_at_once_then_at_most_once_per_interval():
    from fleetvote.logs import Summary

    now = [100.0]
    buf = io.StringIO()
    logger = logging.getLogger("fleetvote.test.summary")
    logger.handlers[:] = [logging.StreamHandler(buf)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    lines = []
    logger.handlers[0].emit = lambda r: lines.append((r.getMessage(), r.counts, r.seconds))
    s = Summary(logger, "members computed by the engine", 10.0, clock=lambda: now[0])
    s.add("m1 no_board")
    assert lines == [("members computed by the engine", {"m1 no_board": 1}, 0.0)]
    for t in (101, 102, 103):
        now[0] = t
        s.add("m1 no_board")
        s.add("m2 timeout")
    s.flush()
    assert len(lines) == 1  # within the interval: held
    now[0] = 110.5
    s.flush()
    assert lines[1] == ("members computed by the engine", {"m1 no_board": 3, "m2 timeout": 3}, 9.5)
    s.flush()
    now[0] = 200.0
    s.flush()
    assert len(lines) == 2  # nothing new: no line
    s.add("m2 timeout")  # after a quiet spell: at once
    assert lines[2][1] == {"m2 timeout": 1}


async def test_a_fallback_per_request_is_debug_and_info_gets_one_summary(tmp_path):
    from test_logs import app_without_boards, captured_json_logs, lines

    with captured_json_logs() as buf:
        async with app_without_boards(tmp_path) as client:
            for _ in range(5):
                r = await client.post("/classify", content=bytes(3072),
                                      headers={"content-type": "application/octet-stream"})
                assert r.status_code == 200 and r.json()["members"][0]["reason"] == "no_board"
    logged = lines(buf)
    assert not [x for x in logged if x["msg"] == "member computed by the engine"]  # debug: not at info
    summaries = [x for x in logged if x["msg"] == "members computed by the engine"]
    (member,) = r.json()["members"]
    # the first at once; the four others in the line the fleet's stop flushes
    assert [sum(x["counts"].values()) for x in summaries] == [1, 4]
    assert all(set(x["counts"]) == {f"{member['model_id']} no_board"} for x in summaries)


@pytest.mark.parametrize("argv, want", [
    ([], "crop,flip"),  # the default
    (["--augment", "cutout"], "cutout"),  # replaces the default
    (["--augment", "crop", "--augment", "cutout,flip"], "crop,cutout,flip"),  # repeated, commas, or both
])
def test_list_options_of_other_commands_are_repeatable_or_comma_separated(argv, want):
    from fleetvote.cli import build_parser

    p = build_parser()
    assert p.parse_args(["train", "--arch", "vgg:12", "--out", "o", *argv]).augment == want
    members = [x for a in argv for x in (["--members", a] if a != "--augment" else [])]
    assert (p.parse_args(["ensemble-eval", *members]).members or "crop,flip") == want


# ---- the JSON ------------------------------------------------------------------------------------

def test_every_json_key_of_the_api_follows_the_vocabulary(tmp_path):
    """Read from the OpenAPI document, so a route added later is held to it too: durations in
    milliseconds (``*_ms``), a board by ``board_id``, a model by ``model_id``, a hash by
    ``model_sha256``; no bare ``id``, no other time unit, no ``_prefix``."""
    from test_typed_path import member_ids

    from fleetvote.api.app import create_app
    from fleetvote.settings import Settings
    from conftest import ZOO

    ens = tmp_path / "ensemble.json"
    ens.write_text(json.dumps({"members": [{"id": i} for i in member_ids()], "strategy": "soft", "quorum": 1}))
    from fleetvote.api import oip_schemas

    doc = create_app(Settings(ensemble=ens, zoo=ZOO, urls=[], link_globs=[])).openapi()
    # the Open Inference Protocol's messages keep the protocol's own keys (its request "id")
    protocol = {n for n, v in vars(oip_schemas).items() if isinstance(v, type) and v.__module__ == oip_schemas.__name__}
    keys = {k for name, schema in doc["components"]["schemas"].items() if name not in protocol
            for k in schema.get("properties", {})}
    params = {p["name"] for path in doc["paths"].values() for op in path.values() for p in op.get("parameters", [])}
    assert {"board_id", "board_ids", "model_id", "model_sha256", "on_board_ms", "reason", "detail"} <= keys
    bad = sorted(k for k in keys | params if k in ("id", "sha256", "board", "model")
                 or k.endswith(("_us", "_s", "_seconds", "_sec", "_prefix")))
    assert bad == []


def test_bench_takes_the_key_from_a_file_or_the_environment_never_argv(monkeypatch, tmp_path, capsys):
    from fleetvote.cli import build_parser
    from fleetvote.command import read_api_key
    from fleetvote.errors import ConfigError

    p = build_parser()
    with pytest.raises(SystemExit):
        p.parse_args(["bench", "--api-key", "s3cret"])
    assert "--api-key-file" in capsys.readouterr().err
    assert read_api_key(p.parse_args(["bench"])) is None
    monkeypatch.setenv("FLEETVOTE_API_KEY", "k-env")
    assert read_api_key(p.parse_args(["bench"])) == "k-env"
    key = tmp_path / "key"
    key.write_text("k-file\nignored\n")
    assert read_api_key(p.parse_args(["bench", "--api-key-file", str(key)])) == "k-file"
    key.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_api_key(p.parse_args(["bench", "--api-key-file", str(key)]))
