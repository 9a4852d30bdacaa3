"""The test bed's shared report writer (testbed/reports.py), used by make bench-overload and
make bench-hostile."""

import json

from fleetvote.testbed.reports import run_folder, write_report


def test_a_benchmark_report_is_written_stamped_and_printed(tmp_path, capsys):
    out = run_folder(str(tmp_path / "run"), "demo")
    assert out.is_dir()
    rep = {"figure": 42}
    path = write_report(rep, out, "demo", lambda r: f"figure {r['figure']} in {r['json']}")
    saved = json.loads(path.read_text())
    assert path == out / "demo.json" and saved["figure"] == 42 and saved["json"] == str(path)
    assert saved["host"]["cpus"] >= 1 and saved["host"]["load_avg_1m"] >= 0 and saved["date"].startswith("20")
    assert capsys.readouterr().out.strip() == f"figure 42 in {path}"
    # a report that brings its own date keeps it
    rep2 = {"date": "2026-01-01T00:00:00+00:00"}
    write_report(rep2, out, "demo2", str)
    assert json.loads((out / "demo2.json").read_text())["date"] == "2026-01-01T00:00:00+00:00"


async def test_the_burst_clients_raw_post_reads_status_and_body_and_reports_a_refused_connection():
    import asyncio

    from fleetvote.testbed.overload import _post_raw

    seen = {}

    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(x.split(b":")[1] for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")))
        seen["head"], seen["body"] = head, await reader.readexactly(length)
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nretry-after: 1\r\n\r\nfull")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        status, body = await _post_raw("127.0.0.1", port, "/classify?deadline_ms=3000", b"\x01" * 3072)
    assert (status, body) == (503, b"full")
    assert seen["head"].startswith(b"POST /classify?deadline_ms=3000 HTTP/1.1\r\n") and seen["body"] == b"\x01" * 3072
    status, body = await _post_raw("127.0.0.1", port, "/classify", b"x")  # nothing listens there now
    assert status == 0 and body == b"ConnectionRefusedError"


def test_the_cpu_split_of_a_burst_counts_the_main_thread_apart_from_the_others():
    import os
    import threading
    import time

    from fleetvote.testbed.overload import cpu_split

    before = cpu_split(os.getpid(), [os.getpid()])["raw"]

    spun, done = threading.Event(), threading.Event()

    def spin():
        t = time.thread_time()
        while time.thread_time() - t < 0.3:
            pass
        spun.set()
        done.wait()  # alive while it is counted: an ended thread leaves /proc

    worker = threading.Thread(target=spin)
    worker.start()
    spun.wait()
    after = cpu_split(os.getpid(), [os.getpid()], before)
    done.set()
    worker.join()
    assert after["other_threads_ms"] >= 100 and after["event_loop_ms"] < after["other_threads_ms"]
    assert after["boards_ms"] >= 100  # the "board" here is this process itself: all its threads
