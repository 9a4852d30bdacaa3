"""Prometheus metrics in the text exposition format (no client library needed for a few families).

    fleetvote_requests_total{endpoint, status}      counter (api.requestlog.RequestCount, every request)
    fleetvote_fallbacks_total{reason}               counter
    fleetvote_answers_total{mode, stage}            counter (answers of Fleet.classify by mode and stage)
    fleetvote_board_evaluations_saved_total{mode}   counter (members skipped: not waited for, or never asked)
    fleetvote_board_latency_seconds{board, kind}    histogram (kind: round_trip | on_board)
    fleetvote_board_queue_depth{board}              gauge (read from the fleet at scrape time)
    fleetvote_board_up{board, state}                gauge
"""

from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _labels(**kv: str) -> str:
    def esc(v: str) -> str:
        return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in kv.items()) + "}"


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.fallbacks: dict[str, int] = defaultdict(int)
        self.hist: dict[tuple[str, str], list] = {}
        self.answers: dict[tuple[str, int], int] = defaultdict(int)
        self.saved: dict[str, int] = defaultdict(int)

    def request(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1

    def fallback(self, reason: str) -> None:
        key = reason.split(":")[0]  # "board error: <text>" -> one series per kind, bounded
        with self._lock:
            self.fallbacks[key] += 1

    def answer(self, mode: str, stage: int, skipped: int) -> None:
        """One answer of the fleet in ``mode`` from ``stage``, with ``skipped`` members not
        waited for or never asked (board evaluations saved: a member an early answer did not wait
        for may have been computing already; its queued work is cancelled)."""
        with self._lock:
            self.answers[(mode, stage)] += 1
            self.saved[mode] += skipped

    def observe(self, board: str, kind: str, seconds: float) -> None:
        with self._lock:
            h = self.hist.setdefault((board, kind), [[0] * len(BUCKETS), 0, 0.0])
            for i, b in enumerate(BUCKETS):
                if seconds <= b:
                    h[0][i] += 1
            h[1] += 1
            h[2] += seconds

    def render(self, fleet=None) -> str:
        out = ["# HELP fleetvote_requests_total HTTP requests by endpoint and status.",
               "# TYPE fleetvote_requests_total counter"]
        with self._lock:
            for (ep, st), n in sorted(self.requests.items()):
                out.append(f"fleetvote_requests_total{_labels(endpoint=ep, status=str(st))} {n}")
            out += ["# HELP fleetvote_fallbacks_total Members computed by the engine, by reason.",
                    "# TYPE fleetvote_fallbacks_total counter"]
            for reason, n in sorted(self.fallbacks.items()):
                out.append(f"fleetvote_fallbacks_total{_labels(reason=reason)} {n}")
            out += ["# HELP fleetvote_answers_total Answers of the fleet by mode (all, early, cascade) and stage.",
                    "# TYPE fleetvote_answers_total counter"]
            for (mode, stage), n in sorted(self.answers.items()):
                out.append(f"fleetvote_answers_total{_labels(mode=mode, stage=str(stage))} {n}")
            out += ["# HELP fleetvote_board_evaluations_saved_total Members skipped by early and cascade "
                    "answers: not waited for, or never asked.",
                    "# TYPE fleetvote_board_evaluations_saved_total counter"]
            for mode, n in sorted(self.saved.items()):
                out.append(f"fleetvote_board_evaluations_saved_total{_labels(mode=mode)} {n}")
            out += ["# HELP fleetvote_board_latency_seconds Board latency: round trip and on-board compute.",
                    "# TYPE fleetvote_board_latency_seconds histogram"]
            for (board, kind), (counts, n, total) in sorted(self.hist.items()):
                for b, c in zip(BUCKETS, counts):
                    out.append(f"fleetvote_board_latency_seconds_bucket{_labels(board=board, kind=kind, le=str(b))} {c}")
                out.append(f"fleetvote_board_latency_seconds_bucket{_labels(board=board, kind=kind, le='+Inf')} {n}")
                out.append(f"fleetvote_board_latency_seconds_count{_labels(board=board, kind=kind)} {n}")
                out.append(f"fleetvote_board_latency_seconds_sum{_labels(board=board, kind=kind)} {total:.6f}")
        if fleet is not None:
            out += ["# HELP fleetvote_board_queue_depth Requests waiting per board.",
                    "# TYPE fleetvote_board_queue_depth gauge"]
            for b in fleet.boards.values():
                out.append(f"fleetvote_board_queue_depth{_labels(board=b.url)} {b.queue.qsize()}")
            out += ["# HELP fleetvote_board_up 1 for the board's current state.",
                    "# TYPE fleetvote_board_up gauge"]
            for b in fleet.boards.values():
                out.append(f"fleetvote_board_up{_labels(board=b.url, state=b.state.value)} 1")
        return "\n".join(out) + "\n"
