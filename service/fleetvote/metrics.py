"""Prometheus metrics, with ``prometheus-client`` (https://github.com/prometheus/client_python), named
as Prometheus asks (https://prometheus.io/docs/practices/naming/): base units (seconds, bytes),
counters end in ``_total``. Every app has its own registry, so two apps in one process (the tests)
never share a series.

    fleetvote_http_requests_total{route, status}                    counter    every request (api.requestlog)
    fleetvote_http_request_duration_seconds{route, status}          histogram  from the request's start to its answer
    fleetvote_member_requests_total{model_id}                       counter    images a member was asked to vote on
    fleetvote_member_fallbacks_total{model_id, board_id, reason}    counter    votes the engine computed for a missing board answer
    fleetvote_member_spillovers_total{model_id, board_id, reason}   counter    votes the engine computed because the boards were full
    fleetvote_answers_total{mode, stage}                            counter    answers by mode (all, early, cascade) and cascade stage
    fleetvote_board_evaluations_saved_total{mode}                   counter    members skipped: not waited for (early), never asked (cascade)
    fleetvote_board_round_trip_seconds{board_id, model_id}          histogram  request on the link to answer
    fleetvote_board_on_board_seconds{board_id, model_id}            histogram  inference time the board reported
    fleetvote_board_requests_total{board_id, model_id}              counter    } read from each board's counters
    fleetvote_board_errors_total{board_id, model_id}                counter    } at scrape time (the figures of
    fleetvote_board_timeouts_total{board_id, model_id}              counter    } GET /boards), once the board
    fleetvote_board_reconnects_total{board_id, model_id}            counter    } has said its id
    fleetvote_board_dropped_expired_total{board_id, model_id}       counter    }
    fleetvote_board_queue_depth{board_id, model_id}                 gauge      requests waiting
    fleetvote_board_state{board_id, url, state}                     gauge      1 for the board's state, 0 for the others
    fleetvote_board_info{board_id, url, model_id, model_sha256, board_name, firmware_version}   gauge, always 1
    fleetvote_build_info{version}                                   gauge, always 1
    process_*, python_gc_*, python_info                             the client library's process metrics

``board_id`` and ``model_id`` are the ids of the HTTP API (``GET /boards``, ``/classify``); a board
that has never answered its HELLO has no id yet: it appears only in ``fleetvote_board_state``, with
``board_id=""`` and its url. ``board_id`` is ``""`` on a fallback without a board (``no_board``)
and on a spillover. ``reason`` is one of ``REASONS`` (the ``reason`` of ``/classify``'s members).
Per member totals of the board series: ``sum by (model_id)``.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# The `_created` series (a timestamp per labelled child) double the output and are unused by
# Prometheus' own queries; the client's documented switch turns them off for the process.
prometheus_client.disable_created_metrics()

# The reason tokens of a vote computed by the engine, shared with /classify's `reason`.
# Spillover: the member's boards were all full (load, not a fault); the others are fallbacks.
REASONS = {
    "no_board": "no board serves this member's model",
    "board_offline": "the member's boards are known but not serving (connecting or offline)",
    "queue_full": "every queue of the member's boards was full (spillover)",
    "timeout": "the board did not answer before the deadline",
    "board_error": "the board answered with an error frame or broke the protocol",
    "link_lost": "the link closed while the request was out (unplugged, process died)",
    "error": "any other failure",
    "straggling": "mode early: the vote waited only for this member's board, which straggled (spillover)",
}
SPILLOVER_REASONS = frozenset({"queue_full", "straggling"})

# Board latency: 1 ms (a virtual board at host speed) to 5 s (a real board with a long deadline);
# a nucleo-f411re member takes 120-200 ms, in the middle of the range.
BOARD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# HTTP latency: the same range, up to the largest deadline a request is likely to be given
HTTP_BUCKETS = BOARD_BUCKETS + (10.0,)
STATES = ("connecting", "ready", "busy", "degraded", "offline")  # fleet.owner.State's values
# Prometheus' classic text format (version 0.0.4), which every Prometheus server reads
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The service's metrics. The fleet reports events (``member_request``, ``engine_vote``,
    ``board_answer``); the HTTP layer ``request``; the boards' own counters, queues and states
    are read from ``fleet`` (set by the app once it exists) at every scrape."""

    def __init__(self, version: str = "") -> None:
        self.registry = r = CollectorRegistry()
        self.fleet = None
        self.http_requests = Counter("fleetvote_http_requests", "HTTP requests, by route template and status.",
                                     ["route", "status"], registry=r)
        self.http_duration = Histogram("fleetvote_http_request_duration_seconds",
                                       "Time from a request's arrival to its answer, by route and status.",
                                       ["route", "status"], buckets=HTTP_BUCKETS, registry=r)
        self.member_requests = Counter("fleetvote_member_requests", "Images a member was asked to vote on.",
                                       ["model_id"], registry=r)
        self.member_fallbacks = Counter("fleetvote_member_fallbacks",
                                        "Votes computed by the engine because a board answer was missing, by reason.",
                                        ["model_id", "board_id", "reason"], registry=r)
        self.member_spillovers = Counter("fleetvote_member_spillovers",
                                         "Votes computed by the engine because the member's boards were full.",
                                         ["model_id", "board_id", "reason"], registry=r)
        self.answers = Counter("fleetvote_answers", "Answers of the fleet by mode (all, early, cascade) and stage.",
                               ["mode", "stage"], registry=r)
        self.saved = Counter("fleetvote_board_evaluations_saved",
                             "Members skipped by early and cascade answers: not waited for, or never asked.",
                             ["mode"], registry=r)
        self.round_trip = Histogram("fleetvote_board_round_trip_seconds",
                                    "Round trip of one image on the link, from sending it to its answer.",
                                    ["board_id", "model_id"], buckets=BOARD_BUCKETS, registry=r)
        self.on_board = Histogram("fleetvote_board_on_board_seconds", "Inference time the board reported.",
                                  ["board_id", "model_id"], buckets=BOARD_BUCKETS, registry=r)
        Gauge("fleetvote_build_info", "The service's version.", ["version"], registry=r).labels(version).set(1)
        r.register(_FleetCollector(self))
        prometheus_client.ProcessCollector(registry=r)
        prometheus_client.PlatformCollector(registry=r)
        prometheus_client.GCCollector(registry=r)

    # ---- events --------------------------------------------------------------------------------

    def answer(self, mode: str, stage: int, skipped: int) -> None:
        """One answer of the fleet in ``mode`` from ``stage``, with ``skipped`` members not
        waited for or never asked (board evaluations saved: a member an early answer did not wait
        for may have been computing already; its queued work is cancelled)."""
        self.answers.labels(mode, str(stage)).inc()
        self.saved.labels(mode).inc(skipped)

    def request(self, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route, str(status)).inc()
        self.http_duration.labels(route, str(status)).observe(seconds)

    def member_request(self, model_id: str) -> None:
        self.member_requests.labels(model_id).inc()

    def engine_vote(self, model_id: str, reason: str, board_id: str | None = None) -> None:
        """A vote the engine computed: a spillover or a fallback, by its reason token."""
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}; one of {', '.join(REASONS)}")
        family = self.member_spillovers if reason in SPILLOVER_REASONS else self.member_fallbacks
        family.labels(model_id, board_id or "", reason).inc()

    def board_answer(self, board_id: str, model_id: str, round_trip_s: float, on_board_s: float) -> None:
        self.round_trip.labels(board_id, model_id).observe(round_trip_s)
        self.on_board.labels(board_id, model_id).observe(on_board_s)

    # ---- exposition ----------------------------------------------------------------------------

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


class _FleetCollector:
    """The boards' figures, read from the fleet at scrape time: the same numbers as GET /boards."""

    COUNTERS = ("requests", "errors", "timeouts", "reconnects", "dropped_expired")

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self):
        return []  # series change with the fleet: nothing to check at registration

    def collect(self):
        boards = list(getattr(self._metrics.fleet, "boards", {}).values())
        counters = {c: CounterMetricFamily(f"fleetvote_board_{c}", f"Board counter {c!r} (GET /boards' counters).",
                                           labels=["board_id", "model_id"]) for c in self.COUNTERS}
        depth = GaugeMetricFamily("fleetvote_board_queue_depth", "Requests waiting for the board.",
                                  labels=["board_id", "model_id"])
        state = GaugeMetricFamily("fleetvote_board_state", "1 for the board's current state, 0 for the others.",
                                  labels=["board_id", "url", "state"])
        info = GaugeMetricFamily("fleetvote_board_info", "What the board said in its HELLO (always 1).",
                                 labels=["board_id", "url", "model_id", "model_sha256", "board_name",
                                         "firmware_version"])
        for b in boards:  # read directly, not by snapshot(): no percentiles computed per scrape
            bid = b.board_id or ""
            for st in STATES:
                state.add_metric([bid, b.url, st], 1.0 if b.state.value == st else 0.0)
            if b.info is None:
                continue
            labels = [bid, b.info.model_id]
            for c in self.COUNTERS:
                counters[c].add_metric(labels, getattr(b.counters, c))
            depth.add_metric(labels, b.queue.qsize())
            info.add_metric([bid, b.url, b.info.model_id, b.info.model_sha256.hex(), b.info.board_name,
                             ".".join(map(str, b.info.firmware_version))], 1.0)
        yield from counters.values()
        yield from (depth, state, info)
