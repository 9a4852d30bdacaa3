"""Where a benchmark of the test bed writes its report, and how: one folder per run under
``runs/<name>/<date-time>`` (or ``--out``), ``<name>.json`` with every figure, stamped with the
date, the host's CPUs and load (a figure means little without them: the project's machine is
shared), and the text report printed.

    out = run_folder(a.out, "overload")
    ...
    write_report(rep, out, "overload", format_report)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from ..settings import ROOT


def run_folder(out: str | None, name: str) -> Path:
    """``out``, or ``runs/<name>/<date-time>`` in the repository, created."""
    path = Path(out or ROOT / "runs" / name / datetime.now().strftime("%Y%m%d-%H%M%S"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def host_figures() -> dict:
    """The host's CPUs and its load average over the last minute, now."""
    return {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}


def write_report(rep: dict, out: Path, name: str, render: Callable[[dict], str]) -> Path:
    """Stamps ``rep`` (date, unless it has one; the JSON's path; the host's figures), writes it to
    ``out/<name>.json`` and prints ``render(rep)``; returns the JSON's path."""
    path = out / f"{name}.json"
    rep.setdefault("date", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    rep.update(json=str(path), host=host_figures())
    path.write_text(json.dumps(rep, indent=1) + "\n")
    print(render(rep))
    return path
