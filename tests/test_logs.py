"""Structured logs: one JSON object per line, each request with an id that its log lines and its
response carry; and a command line whose every subcommand says what it does, with an example."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging

import httpx
import pytest

from conftest import ZOO
from test_service import member_ids


@contextlib.contextmanager
def captured_json_logs():
    """logs.setup(json_lines=True) writing into a buffer; the loggers restored afterwards."""
    from fleetvote import logs

    names = ("fleetvote",)
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in names}
    buf = io.StringIO()
    logs.setup(json_lines=True)
    for n in names:
        logging.getLogger(n).handlers[0].setStream(buf)
    try:
        yield buf
    finally:
        for n, (handlers, level, propagate) in saved.items():
            lg = logging.getLogger(n)
            lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


def lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(x) for x in buf.getvalue().splitlines()]  # every line is one JSON object


@contextlib.asynccontextmanager
async def app_without_boards(tmp_path, **kw):
    from fleetvote.api.app import create_app
    from fleetvote.settings import Settings

    ens = tmp_path / "ensemble.json"
    ens.write_text(json.dumps({"members": [{"id": i} for i in member_ids(1)], "strategy": "soft", "quorum": 1}))
    app = create_app(Settings(ensemble=ens, zoo=ZOO, urls=[], link_globs=[], scan_usb=False, **kw))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield client


async def test_each_request_gets_an_id_in_its_response_and_its_json_log_line(tmp_path):
    with captured_json_logs() as buf:
        async with app_without_boards(tmp_path) as client:
            r1 = await client.post("/classify", content=b"GIF89a", headers={"content-type": "image/gif"})
            r2 = await client.post("/classify", content=bytes(3072),
                                   headers={"content-type": "application/octet-stream", "x-request-id": "job-42.a"})
            r3 = await client.get("/healthz", headers={"x-request-id": "no spaces or\ttabs allowed"})
    assert r1.status_code == 415 and r2.status_code == 200
    rid1 = r1.headers["x-request-id"]
    assert len(rid1) == 16 and r2.headers["x-request-id"] == "job-42.a"
    assert r3.headers["x-request-id"] != "no spaces or\ttabs allowed"  # not a token: a new id
    reqs = {x["request"]: x for x in lines(buf) if x["msg"] == "request"}
    assert reqs[rid1]["status"] == 415 and reqs[rid1]["path"] == "/classify" and reqs[rid1]["level"] == "info"
    assert reqs["job-42.a"]["status"] == 200 and reqs["job-42.a"]["method"] == "POST" and reqs["job-42.a"]["ms"] >= 0
    assert r3.headers["x-request-id"] not in reqs  # a 200 GET (the dashboard's polling) is debug


async def test_a_refused_upload_is_logged_with_its_request_id(tmp_path):
    with captured_json_logs() as buf:
        async with app_without_boards(tmp_path, upload_limit=4096) as client:
            r = await client.post("/classify", content=bytes(10_000), headers={"content-type": "image/png"})
    assert r.status_code == 413
    (line,) = [x for x in lines(buf) if x.get("request") == r.headers["x-request-id"]]
    assert line["status"] == 413


def test_records_logged_while_a_request_is_served_carry_its_id():
    from fleetvote import logs

    with captured_json_logs() as buf:
        log = logging.getLogger("fleetvote.board")
        token = logs.REQUEST_ID.set("r-1")
        try:
            log.info("board state", extra={"board": "/dev/fleetvote/066D-if02"})
        finally:
            logs.REQUEST_ID.reset(token)
        log.info("between requests", extra={"board": "/dev/fleetvote/066D-if02"})
    first, second = lines(buf)
    assert first["request"] == "r-1" and first["board"] == "/dev/fleetvote/066D-if02"
    assert "request" not in second


def test_uvicorn_log_config_puts_the_server_messages_in_json_lines_and_drops_its_access_log():
    # in a child process: dictConfig closes every existing handler of the process, and in this
    # one that includes handlers other libraries (absl, imported with TensorFlow) opened on
    # pytest's captured stderr
    import subprocess
    import sys

    code = (
        "import logging, logging.config\n"
        "from fleetvote import logs\n"
        "logging.config.dictConfig(logs.uvicorn_log_config(json_lines=True))\n"
        "logging.getLogger('uvicorn.error').info('Uvicorn running on %s', 'http://127.0.0.1:8000')\n"
        "logging.getLogger('uvicorn.access').info('127.0.0.1:1 - \"GET /boards HTTP/1.1\" 200')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (line,) = r.stderr.splitlines()
    assert json.loads(line)["msg"] == "Uvicorn running on http://127.0.0.1:8000"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    from fleetvote.cli import build_parser

    p = build_parser()
    (sub,) = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_top_level_help_lists_every_subcommand_with_examples():
    from fleetvote.cli import build_parser

    text = build_parser().format_help()
    assert "examples:" in text and "fleetvote serve" in text
    for name in subcommands():
        assert name in text


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_subcommand_help_says_what_it_does_with_an_example(name):
    sp = subcommands()[name]
    text = sp.format_help()
    assert sp.description and len(sp.description) > 20, f"{name}: no description"
    assert "example" in text.lower() and f"fleetvote {name}" in text, f"{name}: no example"


def test_a_text_log_line_cannot_be_forged_by_a_newline_in_a_field():
    import logging

    from fleetvote.logs import TextFormatter

    record = logging.LogRecord("fleetvote.api", logging.INFO, __file__, 1, "request", None, None)
    record.path = "/x\n2026-12-01 19:00:00 ERROR fleetvote.api admin key rotated"
    line = TextFormatter().format(record)
    assert "\n" not in line and 'path="/x\\n2026-12-01' in line
