"""``fleetvote bench``: a load generator for the HTTP API, in the manner of Triton's perf_analyzer.

It POSTs CIFAR-10 test images (raw 3,072-byte bodies; ``--synthetic``: seeded noise images, no data
set needed, no accuracy) to ``/classify`` over real HTTP, in two modes, for a number of requests
(``--count``) or a time (``--duration``) per level:

* **closed loop** (``--concurrency``, default 1, 4, 16, 64): that many requests in flight, each
  worker sending its next image as soon as its answer arrives. The load adapts to the server, so
  it hides queueing delay: a slow server simply gets fewer requests.
* **open loop** (``--rate R[,R...]``, requests per second): Poisson arrivals (exponential gaps,
  seeded), each request sent at its time whatever the earlier ones are doing, as perf_analyzer's
  request-rate mode and MLPerf Inference's server scenario do. Latency is end to end, from the
  request's scheduled arrival to the last byte of its answer, so a client that falls behind (its
  lag is reported) or a full connection pool counts against the latency rather than hiding it.
  Per rate: offered rate (arrivals over their span) and answered rate (200s over the time from
  the first arrival to the last answer), 503s, p50/p90/p99, and where the members' votes came from:
  boards, fallback (the engine standing in for a failed, late or missing board) and spillover (the
  engine taking a member whose every board queue was full).

With ``--rate`` alone only the open loop runs; with both, both. Per closed-loop level it reports:

* throughput (answered requests per second of wall time) and HTTP latency p50/p90/p95/p99, as
  the client sees it (send to last byte of the answer);
* errors (transport failures, non-200 other than 503) and 503s (admission control) apart;
* accuracy of the answers against the test labels, and the share of member answers that came
  from the fallback engine rather than a board (and of requests with at least one);
* per board (from each answer's ``members``): queue, wire and on-board time and the member's
  latency (queue + round trip);
* the service's own overhead (below).

Then it runs the fusion strategies (``?strategy=``) on the same images, for accuracy per strategy.

Overhead of the service, per request: HTTP latency minus the largest member latency of that
answer (``latency_ms`` of a member = its queue wait + the board's round trip; for a fallback member
the engine's compute time). What is left is HTTP (client and server), decoding, the fan-out's own
bookkeeping and fusion. It is split into two parts that locate the time:
``client_http_ms`` = HTTP latency - the server's ``latency_ms`` (client, socket, uvicorn, FastAPI,
decoding) and ``fleet_ms`` = the server's ``latency_ms`` - the largest member (inside
``Fleet.classify`` but not waiting for a member). Targets: p50 <= 2 ms and p99 <= 10 ms at
concurrency 1 and 32 (``--overhead-concurrency``; levels not in the sweep are run as well).

Writes ``bench.json`` (everything), ``bench.csv`` (one row per level and strategy),
``bench_boards.csv`` (one row per level and board), ``bench_latency.png`` (latency and throughput
against concurrency) and ``bench_strategies.png`` (accuracy per strategy).

    fleetvote bench --url http://127.0.0.1:8000 --count 500
    fleetvote bench --serve-virtual --ensemble models/zoo/ensemble.json --duration 10

``--serve-virtual`` starts ``fleetvote serve --virtual`` itself on a free loopback port, waits
until every member has a ready board, runs the bench and stops the server (and, should any
outlive it, its virtual boards) by PID.

Only loopback URLs are accepted unless ``--allow-remote`` says otherwise: the load is meant for
your own service. The bench needs the runtime install only (httpx is a runtime dependency; tqdm
draws the progress bar; the plots need matplotlib and are skipped, said so, without it).

Its own cost: the client's CPU time per request (``cpu_ms_per_request.client``) is reported per
level, so that a figure measured on a shared machine can subtract it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import ipaddress
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from ..command import add_api_key, add_data, command_line, read_api_key
from ..errors import ConfigError
from ..fusion import STRATEGIES
from .processes import free_port, terminate
from .virtual import BOARD_SPEEDS

DEFAULT_LEVELS = (1, 4, 16, 64)
OVERHEAD_LEVELS = (1, 32)
OVERHEAD_TARGET_P50_MS = 2.0
OVERHEAD_TARGET_P99_MS = 10.0
BAR_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")  # one per strategy bar, cycled
ORDER_SEED = 0  # the image order: a fixed permutation of the test split, the same for every level
PERCENTILES = (50, 90, 95, 99)
SYNTHETIC_IMAGES = 256  # --synthetic: distinct noise images, cycled
SYNTHETIC_SEED = 20
# the engine's reason for a member no board of its could take in time: spillover, not a failure
# (the reason token queue_full; "queue full" was its text before the one vocabulary)
SPILLOVER_REASONS = ("queue_full", "queue full", "spillover")


# ---- one request -----------------------------------------------------------------------------

@dataclass
class Sample:
    index: int  # image index in the test split
    truth: int
    status: int  # HTTP status; 0 for a transport error
    http_ms: float
    t_send: float = 0.0  # time.perf_counter() at the send (CLOCK_MONOTONIC: comparable across processes)
    seq: int = -1  # also sent as the x-bench-seq header, to match server-side traces
    error: str | None = None
    label: int | None = None
    fallbacks: int = 0
    server_ms: float | None = None
    members: list[dict] = field(default_factory=list)
    scheduled: float | None = None  # open loop: perf_counter() of the arrival the request stood for
    e2e_ms: float | None = None  # open loop: scheduled arrival to the answer's last byte

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def member_max_ms(self) -> float | None:
        return max((m["latency_ms"] for m in self.members), default=None)


def check_loopback(url: str, allow_remote: bool = False) -> str:
    """The URL, if its host is this machine's loopback (or any host with ``allow_remote``);
    ConfigError otherwise."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{url}: not an http:// URL")
    if not host:
        raise ConfigError(f"{url}: no host")
    if host != "localhost" and not allow_remote:
        try:
            loop = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loop = False
        if not loop:
            raise ConfigError(f"{url}: the bench loads loopback services only (127.0.0.0/8, ::1, localhost); "
                              "add --allow-remote to load a service on another machine that you run")
    return url.rstrip("/")


def member_origin(m: dict) -> str:
    """Where a member's vote came from: "board", "spillover" (the engine took it because every
    board queue of its member was full) or "fallback" (the engine stood in for a board that
    failed, was late or is missing)."""
    if m["source"] == "board":
        return "board"
    if m["source"] == "spillover" or str(m.get("reason") or "").startswith(SPILLOVER_REASONS):
        return "spillover"
    return "fallback"


def _member_view(m: dict) -> dict:
    return {"model_id": m["model_id"], "board_id": m.get("board_id"), "source": m["source"],
            "origin": member_origin(m),
            "queue_ms": float(m["queue_ms"]), "wire_ms": float(m["wire_ms"]),
            "on_board_ms": m.get("on_board_ms"), "latency_ms": float(m["latency_ms"])}


async def _post(client, path: str, body: bytes, index: int, truth: int, seq: int = -1,
                scheduled: float | None = None) -> Sample:
    s = await _post_once(client, path, body, index, truth, seq)
    if scheduled is not None:
        s.scheduled = scheduled
        s.e2e_ms = (s.t_send - scheduled) * 1000 + s.http_ms
    return s


async def _post_once(client, path: str, body: bytes, index: int, truth: int, seq: int) -> Sample:
    import httpx

    t0 = time.perf_counter()
    try:
        r = await client.post(path, content=body, headers={"x-bench-seq": str(seq)})
        ms = (time.perf_counter() - t0) * 1000
    except httpx.HTTPError as exc:
        return Sample(index, truth, 0, (time.perf_counter() - t0) * 1000, t0, seq, error=type(exc).__name__)
    if r.status_code != 200:
        return Sample(index, truth, r.status_code, ms, t0, seq, error=f"HTTP {r.status_code}")
    try:
        b = r.json()
        return Sample(index, truth, 200, ms, t0, seq, label=int(b["label"]), fallbacks=int(b.get("fallbacks", 0)),
                      server_ms=float(b["latency_ms"]), members=[_member_view(m) for m in b["members"]])
    except (ValueError, KeyError, TypeError) as exc:
        return Sample(index, truth, 0, ms, t0, seq, error=f"bad body: {type(exc).__name__}")


def arrivals(rate: float, count: int | None, duration: float | None, seed: int = ORDER_SEED) -> np.ndarray:
    """Poisson arrival times (seconds from the first, which is at 0) at ``rate`` per second: the
    first ``count``, or those before ``duration`` (whichever ends first). Seeded by the rate, so a
    rerun sends the same schedule."""
    if rate <= 0:
        raise ConfigError(f"rate {rate}: requests per second must be > 0")
    if count is None and duration is None:
        raise ConfigError("give a count or a duration per rate")
    rng = np.random.default_rng([seed, int(round(rate * 1000))])
    n = count if count is not None else int(rate * duration + 6 * np.sqrt(rate * duration) + 16)
    gaps = rng.exponential(1.0 / rate, size=n)
    at = np.concatenate([[0.0], np.cumsum(gaps[1:])])
    if duration is not None:
        at = at[at < duration]
    return at[:count] if count is not None else at


async def run_rate(client, images: np.ndarray, labels: np.ndarray, order: np.ndarray, rate: float,
                   count: int | None, duration: float | None, desc: str = "",
                   progress: bool = True) -> tuple[list[Sample], float, float]:
    """Open loop: one request at each Poisson arrival at ``rate`` per second, sent at its time
    whether or not the earlier ones have been answered. Returns the samples, the span of the
    arrivals actually sent (s) and the wall time from the first arrival to the last answer (s)."""
    from tqdm.auto import tqdm

    at = arrivals(rate, count, duration)
    bar = tqdm(total=len(at), desc=desc, unit="req", leave=False, disable=None if progress else True)
    samples: list[Sample] = []

    async def one(i: int, when: float) -> None:
        k = int(order[i % len(order)])
        s = await _post(client, "/classify", images[k].tobytes(), k, int(labels[k]), seq=i, scheduled=when)
        samples.append(s)
        bar.update(1)

    tasks = []
    t0 = time.perf_counter()
    try:
        for i, a in enumerate(at):
            delay = t0 + a - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, t0 + a)))
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        bar.close()
    span = float(at[-1]) if len(at) > 1 else 0.0
    return samples, span, time.perf_counter() - t0


async def run_level(client, images: np.ndarray, labels: np.ndarray, order: np.ndarray, concurrency: int,
                    count: int | None, duration: float | None, strategy: str | None = None,
                    desc: str = "", progress: bool = True) -> tuple[list[Sample], float]:
    """``concurrency`` workers, each sending its next image as soon as its answer arrives, until
    ``count`` requests were sent or ``duration`` seconds passed. Returns the samples and the
    wall time from the first send to the last answer."""
    from tqdm.auto import tqdm

    path = "/classify" + (f"?strategy={strategy}" if strategy else "")
    samples: list[Sample] = []
    next_i = 0
    t0 = time.perf_counter()
    stop_at = t0 + duration if duration else None
    bar = tqdm(total=count if count else None, desc=desc, unit="req", leave=False,
               disable=None if progress else True)

    async def worker() -> None:
        nonlocal next_i
        while True:
            if count is not None and next_i >= count:
                return
            if stop_at is not None and time.perf_counter() >= stop_at:
                return
            i = next_i
            next_i += 1
            k = int(order[i % len(order)])
            s = await _post(client, path, images[k].tobytes(), k, int(labels[k]), seq=i)
            samples.append(s)
            bar.update(1)

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        bar.close()
    return samples, time.perf_counter() - t0


# ---- CPU accounting --------------------------------------------------------------------------

def cpu_seconds(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU time (user + system) so far of this process ("client") and of each named group of
    processes (Linux /proc; a process that has gone counts 0)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    out = {"client": ru.ru_utime + ru.ru_stime}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for name, group in pids.items():
        total = 0.0
        for pid in group:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15)
            except (OSError, IndexError, ValueError):
                pass
        out[name] = total
    return out


def cpu_per_request(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float | None]:
    return {k: round((after[k] - before[k]) * 1000 / n, 2) if n else None for k in after}


# ---- statistics ------------------------------------------------------------------------------

def pct(values, ps=PERCENTILES) -> dict:
    """p50... of values (linear interpolation between ranks), mean and max; None when empty."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return {**{f"p{p}": None for p in ps}, "mean": None, "max": None}
    out = {f"p{p}": round(float(np.percentile(v, p)), 3) for p in ps}
    out.update(mean=round(float(v.mean()), 3), max=round(float(v.max()), 3))
    return out


def board_stats(samples: list[Sample]) -> list[dict]:
    """Per (model, board) of the answered requests: queue, wire, on-board time, member latency."""
    groups: dict[tuple, list[dict]] = {}
    for s in samples:
        if s.ok:
            for m in s.members:
                key = (m["model_id"], m["board_id"] if m["source"] == "board" else None, m["source"])
                groups.setdefault(key, []).append(m)
    rows = []
    for (mid, bid, source), ms in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1] or "")):
        rows.append({
            "model_id": mid, "board_id": bid, "source": source, "answers": len(ms),
            "queue_ms": pct([m["queue_ms"] for m in ms], (50, 99)),
            "wire_ms": pct([m["wire_ms"] for m in ms], (50, 99)),
            "board_ms": pct([m["on_board_ms"] for m in ms], (50, 99)),
            "latency_ms": pct([m["latency_ms"] for m in ms], (50, 99)),
        })
    return rows


def summarize(samples: list[Sample], wall_s: float, concurrency: int, strategy: str | None,
              purpose: str = "sweep") -> dict:
    ok = [s for s in samples if s.ok]
    n_members = sum(len(s.members) for s in ok)
    errors: dict[str, int] = {}
    for s in samples:
        if not s.ok and s.status != 503:
            errors[s.error or "?"] = errors.get(s.error or "?", 0) + 1
    overhead = [s.http_ms - s.member_max_ms for s in ok if s.member_max_ms is not None]
    origins = {"board": 0, "fallback": 0, "spillover": 0}
    for s in ok:
        for m in s.members:
            origins[m["origin"]] += 1
    return {
        "purpose": purpose, "concurrency": concurrency, "strategy": strategy or "default",
        "requests": len(samples), "ok": len(ok), "errors": sum(errors.values()),
        "status_503": sum(1 for s in samples if s.status == 503), "error_kinds": errors,
        "wall_s": round(wall_s, 3), "throughput_rps": round(len(ok) / wall_s, 2) if wall_s > 0 else None,
        "latency_ms": pct([s.http_ms for s in ok]),
        "accuracy": round(float(np.mean([s.label == s.truth for s in ok])), 4) if ok and ok[0].truth >= 0 else None,
        "fallback_share": round(sum(s.fallbacks for s in ok) / n_members, 4) if n_members else None,
        "degraded_share": round(sum(1 for s in ok if s.fallbacks) / len(ok), 4) if ok else None,
        "member_sources": {k: round(v / n_members, 4) if n_members else None for k, v in origins.items()},
        "overhead_ms": pct(overhead),
        "overhead_parts_ms": {
            "client_http_ms": pct([s.http_ms - s.server_ms for s in ok if s.server_ms is not None], (50, 99)),
            "fleet_ms": pct([s.server_ms - s.member_max_ms for s in ok
                             if s.server_ms is not None and s.member_max_ms is not None], (50, 99)),
            "largest_member_ms": pct([s.member_max_ms for s in ok], (50, 99)),
        },
        "boards": board_stats(samples),
    }


def summarize_rate(samples: list[Sample], span_s: float, wall_s: float, rate: float) -> dict:
    """An open-loop level: the closed-loop figures, plus offered and answered rate, the latency
    from each request's scheduled arrival, and how far the client fell behind its schedule."""
    base = summarize(samples, wall_s, 0, None, "rate")
    ok = [s for s in samples if s.ok]
    base.pop("concurrency")
    return {
        **base, "rate": rate,
        "offered_rps": round((len(samples) - 1) / span_s, 2) if span_s > 0 else None,
        "answered_rps": round(len(ok) / wall_s, 2) if wall_s > 0 else None,
        "latency_ms": pct([s.e2e_ms for s in ok]),
        "http_latency_ms": pct([s.http_ms for s in ok], (50, 99)),
        "client_lag_ms": pct([(s.t_send - s.scheduled) * 1000 for s in samples if s.scheduled is not None], (50, 99)),
    }


# ---- the bench -------------------------------------------------------------------------------

async def _server_view(client) -> dict:
    view: dict = {}
    for path in ("/ensemble", "/boards"):
        try:
            r = await client.get(path)
            if r.status_code == 200:
                view[path.strip("/")] = r.json()
        except Exception:  # informative only: the bench itself says what failed
            pass
    return view


async def _floor(client, n: int) -> dict:
    """The HTTP floor: GET /healthz (no fleet, no body) one at a time, through the same client."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = await client.get("/healthz")
        if r.status_code == 200:
            times.append((time.perf_counter() - t0) * 1000)
    return {"what": "GET /healthz at concurrency 1, same client and connection pool", "requests": n,
            "latency_ms": pct(times, (50, 99))}


async def _bench(url: str, images: np.ndarray, labels: np.ndarray, levels, count, duration, strategies,
                 strategy_count, strategy_concurrency, overhead_levels, warmup, timeout, api_key,
                 progress, watch, rates=(), max_in_flight: int = 256) -> dict:
    import httpx

    order = np.random.default_rng(ORDER_SEED).permutation(len(labels))
    # open loop: requests beyond the pool's connections wait for one inside the client, which the
    # end-to-end latency (from the scheduled arrival) counts
    most = max([*levels, *overhead_levels, strategy_concurrency if strategies else 1,
                max_in_flight if rates else 1, 1])
    headers = {"content-type": "application/octet-stream"}
    if api_key:
        headers["x-api-key"] = api_key
    limits = httpx.Limits(max_connections=most, max_keepalive_connections=most)
    rep: dict = {"levels": [], "strategies": [], "rates": []}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=timeout) as client:
        view = await _server_view(client)
        rep["server"] = {
            "strategy": view.get("ensemble", {}).get("strategy"),
            "quorum": view.get("ensemble", {}).get("quorum"),
            "members": [{"id": m["model_id"], "weight": m["weight"], "macc": m["macc"], "boards": len(m["board_ids"])}
                        for m in view.get("ensemble", {}).get("members", [])],
            "boards": [{k: b.get(k) for k in ("board_id", "url", "state", "model_id", "board_name", "clock_hz", "baud")}
                       for b in view.get("boards", {}).get("boards", [])],
        }
        if warmup:
            await run_level(client, images, labels, order, 1, warmup, None, desc="warm-up", progress=progress)
        rep["floor"] = await _floor(client, min(count or 200, 200)) if levels else None
        plan = sorted([(c, "sweep") for c in levels] + [(c, "overhead") for c in set(overhead_levels) - set(levels)])
        for c, purpose in plan:
            load, before = os.getloadavg()[0], cpu_seconds(watch)
            samples, wall = await run_level(client, images, labels, order, c, count, duration,
                                            desc=f"concurrency {c}", progress=progress)
            rep["levels"].append({**summarize(samples, wall, c, None, purpose), "load_avg_1m": round(load, 2),
                                  "cpu_ms_per_request": cpu_per_request(before, cpu_seconds(watch), len(samples))})
            rep.setdefault("raw", []).extend(
                {"concurrency": c, "seq": x.seq, "t_send": round(x.t_send, 6), "http_ms": round(x.http_ms, 3),
                 "status": x.status, "server_ms": x.server_ms, "member_max_ms": x.member_max_ms,
                 "fallbacks": x.fallbacks} for x in samples)
        for r in rates:
            load, before = os.getloadavg()[0], cpu_seconds(watch)
            samples, span, wall = await run_rate(client, images, labels, order, r, count, duration,
                                                 desc=f"rate {r:g}/s", progress=progress)
            rep["rates"].append({**summarize_rate(samples, span, wall, r), "load_avg_1m": round(load, 2),
                                 "cpu_ms_per_request": cpu_per_request(before, cpu_seconds(watch), len(samples))})
            rep.setdefault("raw", []).extend(
                {"rate": r, "seq": x.seq, "t_send": round(x.t_send, 6), "scheduled": round(x.scheduled, 6),
                 "e2e_ms": round(x.e2e_ms, 3), "http_ms": round(x.http_ms, 3), "status": x.status,
                 "server_ms": x.server_ms, "fallbacks": x.fallbacks} for x in samples)
        for st in strategies:
            load, before = os.getloadavg()[0], cpu_seconds(watch)
            samples, wall = await run_level(client, images, labels, order, strategy_concurrency, strategy_count,
                                            None, strategy=st, desc=f"strategy {st}", progress=progress)
            rep["strategies"].append({**summarize(samples, wall, strategy_concurrency, st, "strategy"),
                                      "load_avg_1m": round(load, 2),
                                      "cpu_ms_per_request": cpu_per_request(before, cpu_seconds(watch), len(samples))})
    by_c = {lv["concurrency"]: lv for lv in rep["levels"]}
    rep["overhead"] = []
    for c in overhead_levels:
        o = by_c[c]["overhead_ms"]
        rep["overhead"].append({
            "concurrency": c, "p50_ms": o["p50"], "p99_ms": o["p99"],
            "target_p50_ms": OVERHEAD_TARGET_P50_MS, "target_p99_ms": OVERHEAD_TARGET_P99_MS,
            "meets_target": (o["p50"] is not None and o["p50"] <= OVERHEAD_TARGET_P50_MS
                             and o["p99"] <= OVERHEAD_TARGET_P99_MS),
            "parts_ms": by_c[c]["overhead_parts_ms"],
        })
    return rep


def run_bench(url: str, out_dir: Path | None = None, levels=DEFAULT_LEVELS, count: int | None = 200,
              duration: float | None = None, strategies=STRATEGIES, strategy_count: int | None = None,
              strategy_concurrency: int = 4, overhead_levels=OVERHEAD_LEVELS, warmup: int = 10,
              timeout: float = 30.0, api_key: str | None = None, data: str | None = None,
              limit: int | None = None, progress: bool = True, command: str | None = None,
              plots: bool = True, watch_pids: dict[str, list[int]] | None = None, rates=(),
              synthetic: bool = False, allow_remote: bool = False, max_in_flight: int = 256) -> dict:
    """Run the closed-loop sweep (``levels``) and the open-loop rates (``rates``, requests per
    second) against ``url``; write the files into ``out_dir`` when given; the report.
    ``watch_pids``: {"server": [pid], "boards": [pids]}: their CPU time per request is reported
    beside the client's (this process's). ``synthetic``: seeded noise images instead of the test
    split (no data set needed; no accuracy)."""
    url = check_loopback(url, allow_remote)
    if count is None and duration is None:
        raise ConfigError("give a count or a duration per level")
    if not levels:
        overhead_levels = ()
    if not levels and not rates:
        raise ConfigError("nothing to run: give --concurrency levels, --rate rates, or both")
    thin = [c for c in (*levels, *overhead_levels) if count is not None and duration is None and count < 4 * c]
    if thin:
        print(f"fleetvote bench: note: {count} requests per level is under 4 per worker at concurrency "
              f"{', '.join(map(str, sorted(set(thin))))}: those levels are mostly ramp-up and ramp-down",
              file=sys.stderr)
    if synthetic:
        x, y = synthetic_images(limit or SYNTHETIC_IMAGES)
        strategies = ()  # no labels: no accuracy to compare the strategies on
        dataset = f"synthetic: {len(y)} seeded noise images (seed {SYNTHETIC_SEED}), no labels"
    else:
        x, y = load_test_images(data, limit)
        dataset = ("CIFAR-10 test split (JPEG copy)" if "jpeg" in str(data or os.environ.get("CIFAR10_PATH", ""))
                   else "CIFAR-10 test split")
    started = datetime.now(timezone.utc)
    rep = asyncio.run(_bench(url, x, y, tuple(levels), count, duration, tuple(strategies),
                             strategy_count or count or 200, strategy_concurrency, tuple(overhead_levels),
                             warmup, timeout, api_key, progress, watch_pids or {}, tuple(rates), max_in_flight))
    rep = {"command": command, "url": url, "started": started.isoformat(timespec="seconds"),
           "images": int(len(y)), "dataset": dataset,
           "settings": {"levels": list(levels), "rates": list(rates), "count": count, "duration_s": duration,
                        "max_in_flight": max_in_flight,
                        "strategies": list(strategies), "strategy_count": strategy_count or count,
                        "strategy_concurrency": strategy_concurrency, "overhead_levels": list(overhead_levels),
                        "warmup": warmup, "timeout_s": timeout, "order_seed": ORDER_SEED},
           "host": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
           "overhead_definition": "HTTP latency (client) minus the largest member latency_ms (queue + board round "
                                  "trip; engine time for a fallback member) of the same answer",
           **rep}
    if out_dir is not None:
        rep["files"] = write_outputs(rep, Path(out_dir), plots=plots)
    return rep


def synthetic_images(n: int = SYNTHETIC_IMAGES) -> tuple[np.ndarray, np.ndarray]:
    """``n`` seeded uniform-noise 32x32 RGB images and labels of -1 (unknown): load without a
    data set. Every member computes them at the same cost as real images (no early exit)."""
    rng = np.random.default_rng(SYNTHETIC_SEED)
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), np.full(n, -1, dtype=np.int64)


def load_test_images(data: str | None, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The test split (an evenly spread subset of ``limit`` images when given)."""
    from ..data import load_split
    from ..errors import DataError

    try:
        ds = load_split("test", data)
    except (DataError, ImportError) as exc:
        raise ConfigError(f"no CIFAR-10 test split ({exc}); give --data or CIFAR10_PATH, or use --synthetic "
                          "for generated images") from exc
    x, y = ds.x, ds.y
    if limit:
        idx = np.linspace(0, len(y) - 1, num=min(limit, len(y))).round().astype(int)
        x, y = x[idx], y[idx]
    return x, y


# ---- outputs ---------------------------------------------------------------------------------

CSV_FIELDS = ["purpose", "concurrency", "strategy", "requests", "ok", "errors", "status_503", "wall_s",
              "throughput_rps", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms", "accuracy",
              "fallback_share", "degraded_share", "overhead_p50_ms", "overhead_p99_ms"]
RATE_FIELDS = ["rate", "requests", "ok", "errors", "status_503", "offered_rps", "answered_rps", "p50_ms", "p90_ms",
               "p99_ms", "max_ms", "board_share", "fallback_share", "spillover_share", "client_lag_p99_ms",
               "accuracy"]
BOARD_FIELDS = ["purpose", "concurrency", "strategy", "model_id", "board_id", "source", "answers",
                "queue_p50_ms", "queue_p99_ms", "wire_p50_ms", "wire_p99_ms", "board_p50_ms", "board_p99_ms",
                "latency_p50_ms", "latency_p99_ms"]


def _csv_row(lv: dict) -> dict:
    lat = lv["latency_ms"]
    return {**{k: lv[k] for k in ("purpose", "concurrency", "strategy", "requests", "ok", "errors", "status_503",
                                   "wall_s", "throughput_rps", "accuracy", "fallback_share", "degraded_share")},
            **{f"p{p}_ms": lat[f"p{p}"] for p in PERCENTILES}, "mean_ms": lat["mean"], "max_ms": lat["max"],
            "overhead_p50_ms": lv["overhead_ms"]["p50"], "overhead_p99_ms": lv["overhead_ms"]["p99"]}


def write_outputs(rep: dict, out: Path, plots: bool = True) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / "bench.json"), "csv": str(out / "bench.csv"),
             "boards_csv": str(out / "bench_boards.csv")}
    raw = rep.pop("raw", None)
    if raw:  # one line per request of the sweep: for matching with server-side traces (x-bench-seq)
        files["raw_jsonl"] = str(out / "bench_requests.jsonl")
        Path(files["raw_jsonl"]).write_text("".join(json.dumps(r) + "\n" for r in raw))
    rows = rep["levels"] + rep["strategies"]
    with open(files["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(_csv_row(lv) for lv in rows)
    with open(files["boards_csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=BOARD_FIELDS)
        w.writeheader()
        for lv in rows:
            for b in lv["boards"]:
                w.writerow({"purpose": lv["purpose"], "concurrency": lv["concurrency"], "strategy": lv["strategy"],
                            "model_id": b["model_id"], "board_id": b["board_id"], "source": b["source"],
                            "answers": b["answers"],
                            **{f"{k}_{p}_ms": b[f"{k}_ms"][p] for k in ("queue", "wire", "board", "latency")
                               for p in ("p50", "p99")}})
    if rep.get("rates"):
        files["rates_csv"] = str(out / "bench_rates.csv")
        with open(files["rates_csv"], "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=RATE_FIELDS)
            w.writeheader()
            for r in rep["rates"]:
                lat, src = r["latency_ms"], r["member_sources"]
                w.writerow({**{k: r[k] for k in ("rate", "requests", "ok", "errors", "status_503", "offered_rps",
                                                  "answered_rps", "accuracy")},
                            "p50_ms": lat["p50"], "p90_ms": lat["p90"], "p99_ms": lat["p99"], "max_ms": lat["max"],
                            "board_share": src["board"], "fallback_share": src["fallback"],
                            "spillover_share": src["spillover"], "client_lag_p99_ms": r["client_lag_ms"]["p99"]})
    if plots:
        try:
            files.update(plot(rep, out))
        except ImportError:
            files["plots"] = "matplotlib is not installed: no PNG"
    Path(files["json"]).write_text(json.dumps({**rep, "files": files}, indent=1) + "\n")
    return files


def plot(rep: dict, out: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {}
    if rep.get("rates"):
        files["rates_png"] = str(out / "bench_rates.png")
        plot_rates(rep, files["rates_png"], plt)
    lv = sorted(rep["levels"], key=lambda v: v["concurrency"])
    cs = [v["concurrency"] for v in lv]
    if not lv:
        return files
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for p, style in (("p50", "o-"), ("p90", "s--"), ("p99", "^:")):
        ax.plot(cs, [v["latency_ms"][p] for v in lv], style, label=f"HTTP {p}")
    ax.plot(cs, [v["overhead_ms"]["p50"] for v in lv], "x-", color="grey", label="service overhead p50")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(cs, [str(c) for c in cs])
    ax.set_xlabel("concurrency (requests in flight)")
    ax.set_ylabel("latency, ms")
    ax2 = ax.twinx()
    ax2.plot(cs, [v["throughput_rps"] for v in lv], "D-", color="black", alpha=0.5, label="throughput")
    ax2.set_ylabel("answered requests / s")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    ax.set_title(f"fleetvote bench: {len(rep.get('server', {}).get('members', []))} members, {rep['url']}")
    fig.tight_layout()
    files["latency_png"] = str(out / "bench_latency.png")
    fig.savefig(files["latency_png"], dpi=110)
    plt.close(fig)
    if rep["strategies"]:
        fig, ax = plt.subplots(figsize=(5, 4))
        names = [s["strategy"] for s in rep["strategies"]]
        accs = [s["accuracy"] or 0.0 for s in rep["strategies"]]
        bars = ax.bar(names, accs, color=[BAR_COLOURS[k % len(BAR_COLOURS)] for k in range(len(names))])
        for b, a in zip(bars, accs):
            ax.text(b.get_x() + b.get_width() / 2, a, f"{a:.3f}", ha="center", va="bottom", fontsize=9)
        lo = min(accs) if accs else 0
        ax.set_ylim(max(0.0, lo - 0.1), min(1.0, max(accs, default=1) + 0.05))
        ax.set_ylabel(f"accuracy on {rep['strategies'][0]['requests']} test images")
        ax.set_title("accuracy per fusion strategy (over HTTP)")
        fig.tight_layout()
        files["strategies_png"] = str(out / "bench_strategies.png")
        fig.savefig(files["strategies_png"], dpi=110)
        plt.close(fig)
    return files


def plot_rates(rep: dict, path: str, plt) -> None:
    """Open loop: end-to-end latency percentiles and the answered rate against the offered rate."""
    rs = sorted(rep["rates"], key=lambda v: v["rate"])
    xs = [v["offered_rps"] or v["rate"] for v in rs]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for p, style in (("p50", "o-"), ("p90", "s--"), ("p99", "^:")):
        ax.plot(xs, [v["latency_ms"][p] for v in rs], style, label=f"end-to-end {p}")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (requests / s, Poisson arrivals)")
    ax.set_ylabel("latency from scheduled arrival, ms")
    ax2 = ax.twinx()
    ax2.plot(xs, [v["answered_rps"] for v in rs], "D-", color="black", alpha=0.5, label="answered / s")
    ax2.plot(xs, xs, color="grey", lw=0.8, alpha=0.5, label="answered = offered")
    ax2.set_ylabel("answered requests / s")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    ax.set_title(f"fleetvote bench, open loop: {rep['url']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _f(v, fmt="{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def format_report(rep: dict) -> str:
    s = rep.get("server", {})
    lines = [f"{rep['url']}: {len(s.get('members', []))} members "
             f"({', '.join(m['id'] for m in s.get('members', []))}), default strategy {s.get('strategy')}, "
             f"{len(s.get('boards', []))} boards; {rep['images']} images ({rep['dataset']})"]
    if rep["levels"] or rep["strategies"]:
        lines += ["", "closed loop:",
                  f"{'conc':>5}{'req':>6}{'ok/s':>8}{'p50':>8}{'p90':>8}{'p95':>8}{'p99':>8}{'err':>5}{'503':>5}"
                  f"{'fallb.':>8}{'acc':>7}{'ovh p50':>9}{'ovh p99':>9}   (ms)"]
    for lv in rep["levels"] + rep["strategies"]:
        lat = lv["latency_ms"]
        tag = f"  {lv['strategy']}" if lv["purpose"] == "strategy" else ("  (overhead)" if lv["purpose"] == "overhead" else "")
        lines.append(f"{lv['concurrency']:>5}{lv['requests']:>6}{_f(lv['throughput_rps'], '{:.1f}'):>8}"
                     f"{_f(lat['p50']):>8}{_f(lat['p90']):>8}{_f(lat['p95']):>8}{_f(lat['p99']):>8}"
                     f"{lv['errors']:>5}{lv['status_503']:>5}{_f(lv['fallback_share'], '{:.1%}'):>8}"
                     f"{_f(lv['accuracy'], '{:.3f}'):>7}{_f(lv['overhead_ms']['p50']):>9}"
                     f"{_f(lv['overhead_ms']['p99']):>9}{tag}")
    if rep.get("rates"):
        lines += ["", "open loop (Poisson arrivals; latency from each request's scheduled arrival; members' votes "
                      "from boards / fallback / spillover):",
                  f"{'rate':>7}{'req':>6}{'offered':>9}{'answered':>9}{'p50':>9}{'p90':>9}{'p99':>9}{'err':>5}"
                  f"{'503':>5}{'boards':>8}{'fallb.':>8}{'spill':>8}{'lag p99':>9}   (ms, /s)"]
        for r in rep["rates"]:
            lat, src = r["latency_ms"], r["member_sources"]
            lines.append(f"{r['rate']:>7g}{r['requests']:>6}{_f(r['offered_rps'], '{:.2f}'):>9}"
                         f"{_f(r['answered_rps'], '{:.2f}'):>9}{_f(lat['p50'], '{:.1f}'):>9}{_f(lat['p90'], '{:.1f}'):>9}"
                         f"{_f(lat['p99'], '{:.1f}'):>9}{r['errors']:>5}{r['status_503']:>5}"
                         f"{_f(src['board'], '{:.1%}'):>8}{_f(src['fallback'], '{:.1%}'):>8}"
                         f"{_f(src['spillover'], '{:.1%}'):>8}{_f(r['client_lag_ms']['p99'], '{:.1f}'):>9}")
    lines += ["", "per board, p50 (ms):",
              f"{'level':>7}  {'member':<16}{'board':<26}{'n':>5}{'queue':>8}{'wire':>8}{'board':>8}{'latency':>9}"]
    for lv in rep["levels"] + rep.get("rates", []):
        level = f"{lv['rate']:g}/s" if lv["purpose"] == "rate" else str(lv["concurrency"])
        for b in lv["boards"]:
            lines.append(f"{level:>7}  {b['model_id']:<16}{(b['board_id'] or b['source']):<26}"
                         f"{b['answers']:>5}{_f(b['queue_ms']['p50']):>8}{_f(b['wire_ms']['p50']):>8}"
                         f"{_f(b['board_ms']['p50']):>8}{_f(b['latency_ms']['p50']):>9}")
    lines += ["", "CPU time per request sent (ms; client = this benchmark's own cost), and the host's 1-minute "
                  "load average at the start of the level:"]
    for lv in rep["levels"] + rep["strategies"] + rep.get("rates", []):
        cpu = lv.get("cpu_ms_per_request") or {}
        tag = f"{lv['rate']:g}/s" if lv["purpose"] == "rate" else str(lv["concurrency"])
        lines.append(f"{tag:>7}  " + ", ".join(f"{k} {_f(v)}" for k, v in cpu.items())
                     + f"; load {lv.get('load_avg_1m')}" + (f"  {lv['strategy']}" if lv["purpose"] == "strategy" else ""))
    if not rep["levels"]:
        if rep.get("files"):
            lines += ["", "wrote " + ", ".join(v for v in rep["files"].values() if v.endswith((".json", ".csv", ".png")))]
        return "\n".join(lines)
    lines += ["", f"service overhead ({rep['overhead_definition']}):"]
    if rep.get("floor"):
        fl = rep["floor"]["latency_ms"]
        lines.append(f"  HTTP floor ({rep['floor']['what']}): p50 {_f(fl['p50'])} ms, p99 {_f(fl['p99'])} ms")
    for o in rep["overhead"]:
        p = o["parts_ms"]
        verdict = "meets" if o["meets_target"] else "MISSES"
        lines.append(f"  concurrency {o['concurrency']:>3}: p50 {_f(o['p50_ms'])} ms, p99 {_f(o['p99_ms'])} ms "
                     f"({verdict} <= {o['target_p50_ms']:g} / <= {o['target_p99_ms']:g} ms); p50 parts: "
                     f"client+HTTP+app {_f(p['client_http_ms']['p50'])}, fleet {_f(p['fleet_ms']['p50'])}; "
                     f"largest member {_f(p['largest_member_ms']['p50'])}")
    if rep.get("files"):
        lines += ["", "wrote " + ", ".join(v for v in rep["files"].values() if v.endswith((".json", ".csv", ".png")))]
    return "\n".join(lines)


# ---- a server of our own ---------------------------------------------------------------------

def _board_pids(log_path: Path) -> list[int]:
    pids = []
    with contextlib.suppress(OSError):
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if rec.get("msg") == "virtual board started" and isinstance(rec.get("pid"), int):
                        pids.append(rec["pid"])
    return pids


def _is_board(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"board")
    except OSError:
        return False


def stop_by_pid(proc: subprocess.Popen, board_pids: list[int], grace_s: float = 20.0) -> list[int]:
    """SIGTERM the server (its lifespan stops its boards), SIGKILL it after ``grace_s``; then any
    of its boards still alive, by PID. Returns the board PIDs that had to be killed."""
    terminate(proc, grace_s)
    killed = []
    for pid in board_pids:
        if _is_board(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


@contextlib.contextmanager
def virtual_server(ensemble: Path | None = None, run_dir: Path | None = None, ready_timeout: float = 90.0,
                   api_key: str | None = None, serve_args: list[str] | None = None):
    """``fleetvote serve --virtual`` on a free loopback port (``serve_args``: more of its flags,
    e.g. ``--board-speed planned --replicas 2 --no-fallback``); yields (url, info). Ready when every
    board it started serves (``/boards``); stopped by PID."""
    import httpx

    run_dir = Path(run_dir or tempfile.mkdtemp(prefix="fleetvote-bench-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [sys.executable, "-m", "fleetvote.cli", "serve", "--virtual", "--host", "127.0.0.1", "--port", str(port),
           "--run-dir", str(run_dir), "--log-json"]
    if ensemble:
        cmd += ["--ensemble", str(ensemble)]
    cmd += list(serve_args or [])
    # boards of the virtual fleet only: no USB scan, no by-id links
    env = {**os.environ, "FLEETVOTE_SCAN_USB": "false", "FLEETVOTE_LINK_GLOBS": "[]"}
    if api_key:
        env["FLEETVOTE_API_KEY"] = api_key
    log_path = run_dir / "serve.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    info = {"pid": proc.pid, "command": shlex.join(["fleetvote", *cmd[3:]]), "log": str(log_path), "port": port}
    try:
        deadline = time.monotonic() + ready_timeout
        headers = {"x-api-key": api_key} if api_key else {}
        while True:
            if proc.poll() is not None:
                raise ConfigError(f"fleetvote serve exited with status {proc.returncode}; log: "
                                  f"{log_path.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise ConfigError(f"fleetvote serve was not ready in {ready_timeout:.0f} s; log: {log_path}")
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                r = httpx.get(url + "/ensemble", headers=headers, timeout=2)
                started = len(_board_pids(log_path))
                if r.status_code == 200 and all(m["board_ids"] for m in r.json()["members"]) and \
                        sum(len(m["board_ids"]) for m in r.json()["members"]) >= started:
                    break
            time.sleep(0.2)
        info["board_pids"] = _board_pids(log_path)
        yield url, info
    finally:
        info["killed_boards"] = stop_by_pid(proc, _board_pids(log_path))
        info["exit_status"] = proc.returncode
        log.close()


# ---- command line ----------------------------------------------------------------------------

def _ints(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: a comma list of integers like 1,4,16,64") from exc
    if any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError("concurrency levels are >= 1")
    return vals


def _rates(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: a comma list of requests per second like 2,5,7.5") from exc
    if not vals or any(not v > 0 for v in vals):
        raise argparse.ArgumentTypeError("rates are requests per second, > 0")
    return vals


def _strategies(text: str) -> list[str]:
    vals = [x.strip() for x in text.split(",") if x.strip()]
    bad = [v for v in vals if v not in STRATEGIES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown strategy {', '.join(bad)}; use {', '.join(STRATEGIES)}")
    return vals


def serve_flags(board_speed: str = "host", replicas: int = 1, fallback: bool = True, queue_size: int | None = None,
                deadline_ms: float | None = None) -> list[str]:
    """The ``fleetvote serve`` flags of a virtual fleet of this shape."""
    flags = ["--board-speed", board_speed, "--replicas", str(replicas)]
    if not fallback:
        flags.append("--no-fallback")
    if queue_size is not None:
        flags += ["--queue-size", str(queue_size)]
    if deadline_ms is not None:
        flags += ["--deadline-ms", f"{deadline_ms:g}"]
    return flags


def plan_of(a: argparse.Namespace) -> tuple[list[int], list[str]]:
    """(closed-loop levels, strategies) that the command line asks for: with --rate alone, neither
    (open loop only); without --rate or --concurrency, the default sweep; the strategies, unless
    given, only beside a closed-loop sweep."""
    levels = a.concurrency if a.concurrency is not None else ([] if a.rate else list(DEFAULT_LEVELS))
    strategies = a.strategies if a.strategies is not None else (list(STRATEGIES) if levels else [])
    return levels, strategies


def _cmd_bench(a: argparse.Namespace) -> int:
    out = Path(a.out or Path("runs") / "bench" / datetime.now().strftime("%Y%m%d-%H%M%S"))
    count = None if a.duration and a.count is None else (a.count or 200)
    command = command_line()
    levels, strategies = plan_of(a)
    if not a.serve_virtual and (a.board_speed != "host" or a.replicas != 1 or a.no_fallback or a.queue_size
                                or a.deadline_ms):
        raise ConfigError("--board-speed, --replicas, --no-fallback, --queue-size and --deadline-ms shape the "
                          "server that --serve-virtual starts: add --serve-virtual (or start the server with them)")
    kw = dict(out_dir=out, levels=levels, count=count, duration=a.duration, strategies=strategies,
              strategy_count=a.strategy_count, strategy_concurrency=a.strategy_concurrency,
              overhead_levels=a.overhead_concurrency, warmup=a.warmup, timeout=a.timeout, api_key=read_api_key(a),
              data=a.data, limit=a.limit, progress=not a.no_progress, command=command, rates=a.rate or (),
              synthetic=a.synthetic, allow_remote=a.allow_remote, max_in_flight=a.max_in_flight)
    if a.serve_virtual:
        flags = serve_flags(a.board_speed, a.replicas, not a.no_fallback, a.queue_size, a.deadline_ms)
        with virtual_server(Path(a.ensemble) if a.ensemble else None, Path(out) / "serve",
                            api_key=a.api_key, serve_args=flags) as (url, info):
            print(f"started {info['command']} (pid {info['pid']}, boards {info.get('board_pids')})", file=sys.stderr)
            watch = {"server": [info["pid"]], "boards": info.get("board_pids", [])}
            rep = run_bench(url, **{**kw, "out_dir": None, "watch_pids": watch})
        rep["served_by"] = info
        rep["files"] = write_outputs(rep, out)
        print(f"stopped the server (pid {info['pid']}, exit status {info['exit_status']}); "
              f"boards killed after it: {info['killed_boards'] or 'none'}", file=sys.stderr)
    else:
        rep = run_bench(a.url, **kw, watch_pids={"server": [a.server_pid]} if a.server_pid else None)
    print(json.dumps(rep, indent=1) if a.json else format_report(rep))
    return 0 if all(lv["ok"] for lv in rep["levels"] + rep["rates"]) else 1


def add_parser(sub) -> None:
    b = sub.add_parser(
        "bench", help="load the HTTP API: closed loop (concurrency) or open loop (Poisson rate)",
        description="POSTs CIFAR-10 test images (or --synthetic ones) to /classify over HTTP, like Triton's "
                    "perf_analyzer. Closed loop (--concurrency): that many requests in flight; throughput, "
                    "p50/p90/p95/p99 latency, errors and 503s, accuracy, fallback share, per-board queue/wire/"
                    "on-board time, the service's own overhead (HTTP latency minus the largest member's queue + "
                    "round trip), then accuracy per fusion strategy. Open loop (--rate): Poisson arrivals at each "
                    "rate, sent whatever the earlier requests are doing; offered and answered rate, 503s, p50/p90/"
                    "p99 from each request's scheduled arrival, and the share of members' votes from boards, "
                    "fallback and spillover. The client's own CPU time per request is reported. Only loopback "
                    "URLs unless --allow-remote.",
        epilog="examples:\n"
               "  fleetvote bench --url http://127.0.0.1:8000                  # closed loop, 200 requests per level\n"
               "  fleetvote bench --url http://127.0.0.1:8000 --duration 10 --concurrency 1,8,32\n"
               "  fleetvote bench --url http://127.0.0.1:8000 --rate 2,4,8 --duration 30 --synthetic\n"
               "  fleetvote bench --serve-virtual --board-speed planned --replicas 2 --rate 5,10 --duration 20\n"
               "  fleetvote bench --serve-virtual --count 100 --out runs/bench/virtual\n"
               "Writes bench.json, bench.csv, bench_boards.csv, bench_requests.jsonl, bench_rates.csv (open loop) and,\n"
               "with matplotlib, bench_latency.png, bench_rates.png, bench_strategies.png into --out.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--url", default="http://127.0.0.1:8000",
                   help="the service (loopback only unless --allow-remote; default %(default)s)")
    b.add_argument("--allow-remote", action="store_true",
                   help="accept a --url that is not this machine's loopback (load only services you run)")
    b.add_argument("--serve-virtual", action="store_true",
                   help="start `fleetvote serve --virtual` on a free loopback port, bench it, stop it")
    b.add_argument("--ensemble", help="with --serve-virtual: the ensemble file to serve")
    b.add_argument("--board-speed", choices=BOARD_SPEEDS, default="host",
                   help="with --serve-virtual: host or planned (each board at its member's planned latency on its "
                        "catalogue board, as fleetvote plan estimates it)")
    b.add_argument("--replicas", type=int, default=1, help="with --serve-virtual: virtual boards per member")
    b.add_argument("--no-fallback", action="store_true", help="with --serve-virtual: serve with fallback off")
    b.add_argument("--queue-size", type=int, help="with --serve-virtual: requests waiting per board")
    b.add_argument("--deadline-ms", type=float, help="with --serve-virtual: the service's deadline_ms setting (each "
                   "request's whole time; default: each board's own estimate)")
    b.add_argument("--concurrency", type=_ints, default=None,
                   help="closed loop: levels of the sweep, requests in flight (default 1,4,16,64 unless --rate)")
    b.add_argument("--rate", type=_rates, default=None, metavar="R[,R...]",
                   help="open loop: Poisson arrivals at each rate, requests per second")
    b.add_argument("--max-in-flight", type=int, default=256,
                   help="open loop: connections the client opens at most; later requests wait for one, and that "
                        "wait counts in their latency (default %(default)s)")
    b.add_argument("--synthetic", action="store_true",
                   help=f"send {SYNTHETIC_IMAGES} seeded noise images instead of the test split: no data set needed, "
                        "no accuracy")
    b.add_argument("--count", type=int, help="requests per level or rate (default 200 unless --duration)")
    b.add_argument("--duration", type=float, help="seconds per level or rate (with --count: whichever ends first)")
    b.add_argument("--strategies", type=_strategies, default=None,
                   help="fusion strategies to measure accuracy of, via ?strategy= ('' for none; default: every "
                        "registered one beside a closed-loop sweep)")
    b.add_argument("--strategy-count", type=int, help="images per strategy (default: --count)")
    b.add_argument("--strategy-concurrency", type=int, default=4)
    b.add_argument("--overhead-concurrency", type=_ints, default=list(OVERHEAD_LEVELS),
                   help="levels at which the service overhead is reported (default 1,32; run if not in the sweep)")
    b.add_argument("--warmup", type=int, default=10, help="requests sent first and not counted")
    b.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    b.add_argument("--limit", type=int, help="use an evenly spread subset of N test images")
    add_api_key(b)
    b.add_argument("--server-pid", type=int, help="with --url: report this process's CPU time per request")
    b.add_argument("--out", help="output folder (default runs/bench/<date-time>)")
    b.add_argument("--json", action="store_true", help="print the JSON report instead of the tables")
    b.add_argument("--no-progress", action="store_true")
    add_data(b)
    b.set_defaults(func=_cmd_bench)
