"""Past one host: service instances behind HAProxy (`make test-balancer`, docs/deploy.md).

    python -m fleetvote.testbed.balancer [--seconds-before 4] [--seconds-after 8] [--concurrency 8]
    python -m fleetvote.testbed.balancer --config a=fleetvote-a:8000 b=fleetvote-b:8000 --bind :8080

Each instance (``fleetvote serve``) owns its boards (USB on its host, or ``rfc2217://`` boards on
other hosts); HAProxy spreads requests over the instances that are ready. ``haproxy_config()``
writes its configuration, the one reasoned about here:

* health: ``GET /readyz`` every ``inter`` (500 ms); ``fall`` (2) failures mark an instance DOWN,
  ``rise`` (2) successes UP again. An instance whose boards no longer serve the quorum is taken
  out as surely as a dead one; a dead one is out within fall x inter + timeout check (2 s).
* retries: ``POST /classify`` changes nothing on the server, so a request may be sent again:
  ``retry-on conn-failure empty-response`` with ``option redispatch`` sends a request whose
  instance refused the connection (stopping, dead) or closed it without answering (killed
  mid-request) to another instance, ``retries`` (2) times at most. HAProxy can do so only for a
  request it has whole: ``option http-buffer-request`` (a request larger than ``tune.bufsize``,
  16 kB, an upload of a large JPEG, is not retried after it was sent).
* ``balance leastconn``: a classification takes a board's time, not a constant; the instance with
  the fewest requests under way gets the next.

``main()`` runs two instances over their own virtual boards and HAProxy in front (no compose engine),
drives closed-loop load through the balancer, and sends one instance SIGTERM (it must drain: no
request fails), restarts it, then SIGKILLs it with its boards (the host dies: failures at most
what it had in flight): requests, failures, time until the balancer stops sending to it. The
figures go to build/balancer/summary.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..settings import ROOT
from .processes import free_port

INTER_MS = 500     # health check period
FALL, RISE = 2, 2  # consecutive failed / passed checks to mark an instance DOWN / UP
CHECK_TIMEOUT_MS = 1000
RETRIES = 2
RETRY_ON = "conn-failure empty-response"  # HAProxy's retry-on; "conn-failure" alone: no L7 retry


def haproxy_config(servers: dict[str, str], bind: str = "127.0.0.1:8080", stats_socket: str | None = None,
                   inter_ms: int = INTER_MS, fall: int = FALL, rise: int = RISE, dns: str | None = None,
                   retry_on: str = RETRY_ON) -> str:
    """HAProxy 2.6's configuration: ``servers`` {name: host:port} behind ``bind`` (module docstring).
    ``dns`` (host:port, Docker's 127.0.0.11:53 under compose): names are looked up there, again
    while running, so an instance that comes back with a new address is found; a name that does
    not resolve yet leaves its server down (``init-addr ... none``) instead of stopping HAProxy."""
    if not servers:
        raise ConfigError("a balancer needs at least one instance (name=host:port)")
    lines = [
        "# fleetvote behind HAProxy: written by fleetvote.testbed.balancer.haproxy_config (docs/deploy.md)",
        "global",
        "    maxconn 4096",
    ]
    if stats_socket:
        lines.append(f"    stats socket {stats_socket} mode 600 level admin")
    if dns:
        lines += ["", "resolvers dns", f"    nameserver dns {dns}", "    hold valid 5s"]
    lines += [
        "",
        "defaults",
        "    mode http",
        "    log stdout format raw local0 info",
        "    option httplog",
        "    timeout connect 1s",
        "    timeout client 30s",
        # the service answers within its own deadline (degraded, by the engine, if a board is late)
        "    timeout server 30s",
        f"    timeout check {CHECK_TIMEOUT_MS}ms",
        "    timeout http-request 10s",
        "",
        "frontend fleetvote",
        f"    bind {bind}",
        "    default_backend instances",
        "",
        "backend instances",
        "    balance leastconn",
        "    option httpchk GET /readyz",
        "    http-check expect status 200",
        "    option http-buffer-request",
        f"    retries {RETRIES}",
        f"    retry-on {retry_on}",
        "    option redispatch 1",
        # which instance answered, for the caller's logs and for the failover figures
        "    http-response set-header X-Fleetvote-Instance %s",
        f"    default-server check inter {inter_ms}ms fall {fall} rise {rise}"
        + (" resolvers dns init-addr last,libc,none" if dns else ""),
    ]
    lines += [f"    server {name} {addr}" for name, addr in servers.items()]
    return "\n".join(lines) + "\n"


def check_config(text: str, tmp: Path) -> None:
    """``haproxy -c``: ConfigError with HAProxy's own words when it refuses the file."""
    if shutil.which("haproxy") is None:
        raise ConfigError("haproxy is not installed (Debian: apt-get install haproxy)")
    path = tmp / "haproxy.cfg"
    path.write_text(text)
    r = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise ConfigError(f"haproxy -c refused the configuration:\n{r.stdout}{r.stderr}")


# ---- the run ---------------------------------------------------------------------------------

def stats(sock_path: str) -> dict[str, dict[str, str]]:
    """HAProxy's ``show stat`` for the backend's servers: {name: {column: value}}."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(sock_path)
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    head = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(head, x.split(","))) for x in lines[1:] if x]
    return {r["svname"]: r for r in rows if r.get("pxname") == "instances" and r["svname"] not in ("BACKEND",)}


@dataclass
class Request:
    t0: float
    t1: float
    status: int  # 0: no HTTP answer (connection refused, reset)
    instance: str | None


class Load:
    """Closed-loop load: ``n`` threads, each POSTing one raw 32x32x3 image after the other."""

    def __init__(self, port: int, n: int):
        self.port, self.n = port, n
        self.done: list[Request] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._worker, args=(i,), daemon=True) for i in range(n)]
        self.inflight = 0

    def _worker(self, i: int) -> None:
        body = bytes((i * 37 + k * 11) % 256 for k in range(3072))
        conn = None
        while not self.stop.is_set():
            t0 = time.monotonic()
            status, who = 0, None
            with self.lock:
                self.inflight += 1
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                conn.request("POST", "/classify", body, {"content-type": "application/octet-stream"})
                r = conn.getresponse()
                r.read()
                status, who = r.status, r.getheader("X-Fleetvote-Instance")
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            with self.lock:
                self.inflight -= 1
                self.done.append(Request(t0, time.monotonic(), status, who))
        if conn is not None:
            conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(90)


@dataclass
class Instance:
    name: str
    port: int
    run_dir: Path
    proc: subprocess.Popen | None = None
    log: Path | None = None

    def start(self, ensemble: str | None) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.run_dir / "serve.log"
        cmd = [sys.executable, "-m", "fleetvote.cli", "serve", "--virtual", "--host", "127.0.0.1",
               "--port", str(self.port), "--run-dir", str(self.run_dir)]
        if ensemble:
            cmd += ["--ensemble", ensemble]
        # its own session: a SIGKILL of the group takes its virtual boards with it, as a host that dies
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True, env=dict(os.environ))

    def ready(self) -> bool:
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            c.request("GET", "/readyz")
            ok = c.getresponse().status == 200
            c.close()
            return ok
        except OSError:
            return False

    def descendants(self) -> list[int]:
        """The PIDs under the instance's process (its virtual boards run in sessions of their own,
        which a signal to its process group does not reach), from /proc's parent links."""
        parent = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                parent[int(stat.parent.name)] = int(fields[1])
            except (OSError, ValueError, IndexError):
                continue
        out, todo = [], [self.proc.pid]
        while todo:
            kids = [pid for pid, pp in parent.items() if pp == todo[-1]]
            todo.pop()
            out += kids
            todo += kids
        return out

    def kill_group(self, sig: int) -> None:
        """``sig`` to the instance and everything under it: a host that dies takes its boards."""
        for pid in self.descendants():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        self.kill_group(signal.SIGKILL)  # whatever is left (nothing, after a clean stop)
        if self.proc.poll() is None:
            self.proc.wait(10)


def _cmdlines() -> dict[int, str]:
    out = {}
    for f in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            out[int(f.parent.name)] = f.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
    return out


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (/proc/PID/stat utime, stime; proc(5))."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait(what: str, check, timeout: float, every: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            got = check()
        except OSError:  # HAProxy's stats socket not listening yet
            got = None
        if got:
            return got
        time.sleep(every)
    raise ConfigError(f"{what}: not within {timeout:.0f} s")


@dataclass
class Phase:
    signal: str
    requests: int = 0
    failures: int = 0
    failures_after_signal: int = 0
    in_flight_at_victim: int = 0       # HAProxy's current sessions on the victim at the signal
    served_by: dict = field(default_factory=dict)
    down_after_s: float | None = None   # signal -> the balancer marks the victim DOWN
    last_sent_after_s: float = 0.0      # signal -> the last connection the balancer made to the victim
    retries: int = 0                    # HAProxy's retries and redispatches during the phase
    redispatches: int = 0
    exit_after_s: float | None = None   # signal -> the victim's process ended (SIGTERM: drained)
    exit_status: int | None = None
    latency_ms_max: float = 0.0
    latency_ms_p99: float = 0.0


def run_phase(sig: int, victim: Instance, haproxy_port: int, sock: str, concurrency: int,
              before_s: float, after_s: float) -> Phase:
    ph = Phase(signal.Signals(sig).name)
    base = stats(sock)
    with Load(haproxy_port, concurrency) as load:
        time.sleep(before_s)
        st = stats(sock)
        ph.in_flight_at_victim = int(st[victim.name]["scur"] or 0)
        stot = int(st[victim.name]["stot"] or 0)
        t_sig = time.monotonic()
        if sig == signal.SIGKILL:
            victim.kill_group(signal.SIGKILL)
        else:
            victim.proc.send_signal(sig)
        end = t_sig + after_s
        while time.monotonic() < end:
            now = time.monotonic()
            st = stats(sock)
            if int(st[victim.name]["stot"] or 0) > stot:
                stot = int(st[victim.name]["stot"])
                ph.last_sent_after_s = round(now - t_sig, 3)
            if ph.down_after_s is None and st[victim.name]["status"].startswith("DOWN"):
                ph.down_after_s = round(now - t_sig, 3)
            if ph.exit_after_s is None and victim.proc.poll() is not None:
                ph.exit_after_s, ph.exit_status = round(now - t_sig, 3), victim.proc.returncode
            time.sleep(0.05)
    end_stats = stats(sock)
    ph.retries = sum(int(end_stats[n]["wretr"] or 0) - int(base[n]["wretr"] or 0) for n in end_stats)
    ph.redispatches = sum(int(end_stats[n]["wredis"] or 0) - int(base[n]["wredis"] or 0) for n in end_stats)
    done = load.done
    ph.requests = len(done)
    ph.failures = sum(1 for r in done if r.status != 200)
    ph.failures_after_signal = sum(1 for r in done if r.status != 200 and r.t1 >= t_sig)
    for r in done:
        ph.served_by[r.instance or "none"] = ph.served_by.get(r.instance or "none", 0) + 1
    lat = sorted((r.t1 - r.t0) * 1e3 for r in done)
    if lat:
        ph.latency_ms_max = round(lat[-1], 1)
        ph.latency_ms_p99 = round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1)
    if victim.proc.poll() is None:
        try:
            victim.proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
    if ph.exit_after_s is None and victim.proc.poll() is not None:
        ph.exit_status = victim.proc.returncode
    return ph


def run(out: Path, concurrency: int = 8, before_s: float = 4.0, after_s: float = 8.0,
        ensemble: str | None = None, retry_on: str = RETRY_ON) -> dict:
    if shutil.which("haproxy") is None:
        raise ConfigError("haproxy is not installed: apt-get install haproxy (tests/debian-packages.sh test)")
    out = out.resolve()  # HAProxy takes a relative stats socket path for host:port
    out.mkdir(parents=True, exist_ok=True)
    a = Instance("a", free_port(), out / "a")
    b = Instance("b", free_port(), out / "b")
    hport = free_port()
    sock = str(out / "haproxy.sock")
    Path(sock).unlink(missing_ok=True)  # a previous run's
    cfg = haproxy_config({"a": f"127.0.0.1:{a.port}", "b": f"127.0.0.1:{b.port}"}, f"127.0.0.1:{hport}", sock,
                         retry_on=retry_on)
    check_config(cfg, out)
    haproxy = None
    summary: dict = {"concurrency": concurrency, "seconds_before_signal": before_s, "seconds_after_signal": after_s,
                     "health_check": {"inter_ms": INTER_MS, "fall": FALL, "rise": RISE, "timeout_ms": CHECK_TIMEOUT_MS},
                     "retry_on": retry_on, "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)}
    try:
        t0 = time.monotonic()
        for inst in (a, b):
            inst.start(ensemble)
        for inst in (a, b):
            wait(f"instance {inst.name} ready (see {inst.log})", inst.ready, 120, 0.5)
        summary["instances_ready_s"] = round(time.monotonic() - t0, 1)
        haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(out / "haproxy.cfg")],
                                   stdout=open(out / "haproxy.log", "ab"), stderr=subprocess.STDOUT)
        wait("HAProxy's stats socket", lambda: os.path.exists(sock), 10)
        wait("both instances UP in HAProxy", lambda: all(s["status"] == "UP" for s in stats(sock).values()), 30)
        cpu0 = {"haproxy": cpu_s(haproxy.pid), "a": cpu_s(a.proc.pid)}  # start-up apart
        phases = []
        for sig in (signal.SIGTERM, signal.SIGKILL):
            print(f"phase {signal.Signals(sig).name}: load {before_s:.0f} s, then {signal.Signals(sig).name} to "
                  f"instance b, load {after_s:.0f} s more", flush=True)
            ph = run_phase(sig, b, hport, sock, concurrency, before_s, after_s)
            phases.append(ph.__dict__)
            print(json.dumps(ph.__dict__), flush=True)
            b.stop()
            t1 = time.monotonic()
            b.start(ensemble)
            wait("instance b back UP in HAProxy", lambda: stats(sock)["b"]["status"] == "UP", 120, 0.2)
            ph.__dict__["back_up_after_restart_s"] = round(time.monotonic() - t1, 1)
        summary["phases"] = phases
        # what a request costs the balancer and an instance that served throughout (a, boards apart)
        served_a = sum(ph["served_by"].get("a", 0) for ph in phases)
        total = sum(ph["requests"] for ph in phases)
        summary["cpu_ms_per_request"] = {
            "haproxy": round((cpu_s(haproxy.pid) - cpu0["haproxy"]) * 1e3 / max(total, 1), 3),
            "instance_a": round((cpu_s(a.proc.pid) - cpu0["a"]) * 1e3 / max(served_a, 1), 2)}
    finally:
        if haproxy is not None:
            haproxy.terminate()
            haproxy.wait(10)
        for inst in (a, b):
            inst.stop()
    # nothing of the run may outlive it: a board left behind is a process whose command line
    # names this run's folder (its --link)
    time.sleep(0.5)
    summary["left_running"] = [pid for pid, cmd in _cmdlines().items() if str(out) in cmd and pid != os.getpid()]
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fleetvote.testbed.balancer", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="The run needs haproxy (Debian package) and the host firmware (make firmware-host).")
    p.add_argument("--config", nargs="+", metavar="NAME=HOST:PORT",
                   help="print HAProxy's configuration for these instances and stop (what deploy/haproxy/haproxy.cfg is)")
    p.add_argument("--bind", default="127.0.0.1:8080", help="with --config: the balancer's address (default %(default)s)")
    p.add_argument("--dns", metavar="HOST:PORT", help="with --config: resolve the instances' names there while running "
                   "(127.0.0.11:53 under Docker)")
    p.add_argument("--concurrency", type=int, default=8, help="clients in the closed loop (default %(default)s)")
    p.add_argument("--seconds-before", type=float, default=4.0, help="load before the signal (default %(default)s)")
    p.add_argument("--seconds-after", type=float, default=8.0, help="load after the signal (default %(default)s)")
    p.add_argument("--ensemble", help="ensemble file of both instances (default: the zoo's)")
    p.add_argument("--retry-on", default=RETRY_ON, help="HAProxy's retry-on (default %(default)r; 'conn-failure': "
                   "a request under way on a killed instance is not sent again, and fails)")
    p.add_argument("--out", type=Path, default=ROOT / "build" / "balancer", help="logs and summary.json")
    a = p.parse_args(argv)
    try:
        if a.config:
            servers = dict(x.split("=", 1) for x in a.config if "=" in x)
            if len(servers) != len(a.config):
                raise ConfigError("--config takes NAME=HOST:PORT for each instance")
            sys.stdout.write(haproxy_config(servers, a.bind, dns=a.dns))
            return 0
        s = run(a.out, a.concurrency, a.seconds_before, a.seconds_after, a.ensemble, a.retry_on)
    except ConfigError as exc:
        print(f"balancer: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(s, indent=2))
    bad = [ph for ph in s["phases"] if (ph["signal"] == "SIGTERM" and ph["failures"])
           or (ph["signal"] == "SIGKILL" and ph["failures"] > ph["in_flight_at_victim"])
           or ph["down_after_s"] is None]
    if s["left_running"]:
        bad.append({"signal": f"processes left running: {s['left_running']}"})
    print("balancer: " + ("OK" if not bad else f"FAILED: {[ph['signal'] for ph in bad]}"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
