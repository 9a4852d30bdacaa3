"""What the chaos and load runs (and their pytest versions) stand on: virtual boards that take
faults from outside, the service on a loopback port, request checking and resource counts.

* `ControlledBoard`: one virtual board process (firmware/build/host/board) on a pty with a stable
  ``--link`` and a ``--control`` FIFO, so faults can be injected while the service holds the
  link; it can also be frozen (SIGSTOP), killed (SIGKILL) and restarted at the same link.
  Started and stopped by PID; its stderr goes to a log file, where the board writes one line per
  fault it fires.
* `live_service`: the FastAPI app under uvicorn on 127.0.0.1 and a free port, in this process's
  event loop (its asyncio tasks can be counted). `ServiceProcess`: ``fleetvote serve`` in a child
  process (its resident memory can be read alone).
* `Expected`: a pool of images and every member's engine output for each, to check that an
  answer is not only well formed but bit-exact, whoever computed it.
* `resources()`: open file descriptors, asyncio tasks, child processes and zombies of this process.

Everything binds 127.0.0.1 and stops by itself; processes started here are stopped by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..settings import ROOT
from .processes import LOOPBACK, free_port, terminate
from .virtual import BOARD_BIN

ZOO = ROOT / "models" / "zoo"


def build_board(python: str = sys.executable) -> Path:
    """Build the virtual board (``make -C firmware BOARD=host``); returns its path."""
    r = subprocess.run(["make", "-C", str(ROOT / "firmware"), "BOARD=host", f"PYTHON={python}"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"building the virtual board failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return BOARD_BIN


def board_models(binary: Path = BOARD_BIN) -> list[str]:
    """Zoo members built into the virtual board (``board --list``) that have a model file."""
    out = subprocess.run([str(binary), "--list"], capture_output=True, text=True, check=True).stdout.split()
    members = []
    for mid in out:
        card = ZOO / mid / "card.json"
        if (ZOO / mid / "model.tflite").exists() and (not card.exists() or
                                                      json.loads(card.read_text()).get("role") == "member"):
            members.append(mid)
    return members


# ---- boards -------------------------------------------------------------------------------------

FIFO_FAULTS = ("DROP", "DELAY", "GARBAGE", "BAD_CRC", "RESET", "HANG", "UNPLUG")


class ControlledBoard:
    """A virtual board whose faults come from outside the link (``--control`` FIFO) or from
    signals. `start` may be called again after it died: the same --link, a new pty."""

    def __init__(self, model_id: str, index: int, workdir: Path, *, latency_ms: int = 0,
                 binary: Path = BOARD_BIN) -> None:
        self.model_id = model_id
        self.index = index
        self.board_id = f"chaos-{index}-{model_id}"
        self.link = workdir / "boards" / f"b{index}-{model_id}"
        self.control = workdir / "control" / f"b{index}.fifo"
        self.log = workdir / "logs" / f"b{index}.log"
        self.latency_ms = latency_ms
        self.binary = binary
        self.process: subprocess.Popen | None = None
        self.frozen = False
        self.starts = 0
        self.pty: str | None = None

    def __repr__(self) -> str:
        return f"<board {self.index} {self.model_id} pid {self.pid}>"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 5.0) -> None:
        assert not self.running, "already running"
        self.reap()
        for p in (self.link, self.control, self.log):
            p.parent.mkdir(parents=True, exist_ok=True)
        args = [str(self.binary), "--model", self.model_id, "--id", self.board_id, "--pty",
                "--link", str(self.link), "--control", str(self.control)]
        if self.latency_ms:
            args += ["--latency-ms", str(self.latency_ms)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        self.starts += 1
        self.frozen = False
        try:
            ready, _, _ = select.select([self.process.stdout], [], [], timeout)
            line = self.process.stdout.readline().decode() if ready else ""
        finally:
            self.process.stdout.close()  # it prints one line; later writes fail harmlessly
        if not line.startswith("pty "):
            self.stop()
            raise RuntimeError(f"virtual board {self.model_id} did not start: {line.strip() or 'no output'}; "
                               f"see {self.log}")
        self.pty = line.split()[1]

    def inject(self, kind: str, arg: int = 0) -> bool:
        """Arm a fault for the next CLASSIFY reply; False when the board is not running."""
        try:
            fd = os.open(self.control, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENOENT: gone; ENXIO: no reader
            return False
        try:
            os.write(fd, f"{kind} {arg}\n".encode())  # < PIPE_BUF: atomic
        finally:
            os.close(fd)
        return True

    def freeze(self) -> None:
        if self.running:
            os.kill(self.process.pid, signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        if self.running and self.frozen:
            os.kill(self.process.pid, signal.SIGCONT)
        self.frozen = False

    def kill(self) -> None:
        """SIGKILL, as a board losing power; its link is removed at once, as udev removes a
        /dev/serial/by-id link (a dangling one could point at the next board's reused pty)."""
        if self.running:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        with contextlib.suppress(FileNotFoundError):
            self.control.unlink()

    def reap(self) -> int | None:
        """The exit status of a board that ended, and its process object released."""
        if self.process is None or self.process.poll() is None:
            return None
        rc = self.process.returncode
        self.process = None
        return rc

    def stop(self, timeout: float = 3.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None and self.frozen:
            os.kill(self.process.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        terminate(self.process, timeout)
        self.process = None
        self.frozen = False
        for p in (self.link, self.control):
            with contextlib.suppress(FileNotFoundError):
                if p.is_symlink() or p.exists():
                    p.unlink()

    def fired(self) -> list[tuple[str, int]]:
        """Faults the board reported firing, over all its starts, in order."""
        out = []
        if self.log.exists():
            for line in self.log.read_text(errors="replace").splitlines():
                parts = line.split()
                if len(parts) == 4 and parts[:2] == ["board:", "fault"]:
                    out.append((parts[2], int(parts[3])))
        return out


# ---- the service --------------------------------------------------------------------------------

def derive_ensemble(dst: Path, src: Path = ZOO / "ensemble.json", limit: int | None = None,
                    binary: Path = BOARD_BIN) -> tuple[list[str], int]:
    """An ensemble file for a run: `src`'s members that the virtual board has built in (the first
    `limit` of them), with their weights and strategy, the quorum cut down to the members kept.
    Falls back to the built-in members when `src` names none of them. Returns (members, quorum)."""
    built = board_models(binary)
    spec = json.loads(src.read_text()) if src.exists() else {}
    kept = [m for m in spec.get("members", []) if m.get("id") in built] or [{"id": m} for m in built]
    kept = kept[:limit] if limit else kept
    if not kept:
        raise RuntimeError("the virtual board has no zoo member built in")
    quorum = min(int(spec.get("quorum", len(kept))), len(kept))
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps({"members": kept, "strategy": spec.get("strategy", "soft"), "quorum": quorum}))
    return [m["id"] for m in kept], quorum


def write_ensemble(path: Path, members: list[str], quorum: int | None = None, strategy: str = "soft") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"members": [{"id": m} for m in members], "strategy": strategy,
                                "quorum": quorum or len(members)}))
    return path


@contextlib.asynccontextmanager
async def live_service(settings, *, host: str = LOOPBACK, startup_timeout: float = 20.0):
    """The app under uvicorn on ``host`` and a free port, in the running event loop. Yields
    (base_url, app). Leaves no socket or task behind."""
    import uvicorn

    from ..api.app import create_app
    from ..api.server import uvicorn_options

    app = create_app(settings)
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every answer (head and body written apart) waits 40 ms for a delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", log_config=None, lifespan="on",
                            timeout_graceful_shutdown=5, **uvicorn_options(settings))  # as fleetvote serve
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
    try:
        t0 = time.monotonic()
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError("the server stopped during start-up")
            if time.monotonic() - t0 > startup_timeout:
                raise RuntimeError(f"the server did not start within {startup_timeout} s")
            await asyncio.sleep(0.02)
        yield f"http://{host}:{port}", app
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


class ServiceThread:
    """`live_service` in a thread with its own event loop, for synchronous callers (schemathesis):

        with ServiceThread(settings) as svc:
            requests.get(svc.url + "/healthz")
    """

    def __init__(self, settings, startup_timeout: float = 30.0) -> None:
        import threading

        self.settings = settings
        self.url: str | None = None
        self.startup_timeout = startup_timeout
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fleetvote service", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            async with live_service(self.settings) as (url, _app):
                self.url = url
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the caller of __enter__
            self._error = exc
        finally:
            self._ready.set()

    def __enter__(self) -> "ServiceThread":
        self._thread.start()
        if not self._ready.wait(self.startup_timeout) or self.url is None:
            self.__exit__()
            raise RuntimeError(f"the service did not start: {self._error!r}")
        return self

    def __exit__(self, *exc) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


class ServiceProcess:
    """``fleetvote serve`` as a child process on loopback, configured by FLEETVOTE_* variables."""

    def __init__(self, workdir: Path, env: dict[str, str], port: int | None = None, *, host: str = LOOPBACK,
                 args: tuple[str, ...] | None = None, ready_path: str = "/readyz") -> None:
        self.port = port or free_port()
        self.url = f"http://{host}:{self.port}"
        self.args = ("--host", host, "--port", str(self.port)) if args is None else args
        self.ready_path = ready_path
        self.log = workdir / "logs" / "service.log"
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        # only the variables given here configure it, not whatever FLEETVOTE_* the caller has set
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETVOTE_")} | self.env
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fleetvote.cli", "serve", *self.args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"fleetvote serve exited with {self.process.returncode}; see {self.log}")
            with contextlib.suppress(OSError):  # refused, not yet listening; HTTPError: not ready yet
                with urllib.request.urlopen(f"{self.url}{self.ready_path}", timeout=1) as r:
                    if r.status == 200:
                        return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"fleetvote serve not ready within {timeout} s; see {self.log}")

    def rss_bytes(self) -> int:
        return rss_bytes(self.process.pid)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.process is None:
            return None
        rc, self.process = terminate(self.process, timeout), None
        return rc


# ---- checking answers ---------------------------------------------------------------------------

@dataclass
class Expected:
    """Images and each member's engine output for them; the engine time of all members."""

    members: list[str]
    images: np.ndarray  # (n, 32, 32, 3) uint8
    outputs: dict[str, np.ndarray]  # member -> (n, 10) int8
    engine_ms: float  # one image through every member, one after another (median)

    @classmethod
    def make(cls, members: list[str], n: int = 64, seed: int = 0) -> "Expected":
        from ..engine import Engine

        rng = np.random.default_rng(seed)
        # smooth random images (blurred noise) rather than white noise: closer to what a camera sends
        noise = rng.integers(0, 256, (n, 8, 8, 3)).astype(np.float32)
        images = np.clip(noise.repeat(4, 1).repeat(4, 2) + rng.normal(0, 12, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
        engines = {m: Engine.from_file(ZOO / m / "model.tflite") for m in members}
        outputs = {m: np.asarray(e.run(images), dtype=np.int8) for m, e in engines.items()}
        times = []
        for i in range(9):
            t = time.perf_counter()
            for e in engines.values():
                e.run(images[i])
            times.append((time.perf_counter() - t) * 1000)
        return cls(members, images, outputs, float(np.median(times)))


def check_answer(body: dict, expected: Expected, index: int, *, fallback: bool, quorum: int) -> str | None:
    """None when a 200 body is well formed (the response model) and bit-exact; else why not."""
    from ..api.schemas import ClassifyResponse

    try:
        r = ClassifyResponse.model_validate(body)
    except Exception as exc:  # pydantic.ValidationError
        return f"schema: {exc}"
    got = {m.model_id: m for m in r.members}
    if fallback and sorted(got) != sorted(expected.members):
        return f"members {sorted(got)} != {sorted(expected.members)}"
    if not fallback and (len(got) < quorum or any(m.source != "board" for m in r.members)):
        return f"fallback off: {len(got)} members, sources {[m.source for m in r.members]}"
    for mid, m in got.items():
        want = expected.outputs[mid][index].tolist()
        if m.output != want:
            return f"{mid} from {m.source} {m.board_id}: output {m.output} != engine {want}"
        if (m.source == "board") != (m.board_id is not None) or (m.source == "fallback") != (m.reason is not None):
            return f"{mid}: source {m.source} with board_id {m.board_id} and reason {m.reason}"
    if r.fallbacks != sum(m.source == "fallback" for m in r.members) or r.degraded != (r.fallbacks > 0):
        return f"fallbacks {r.fallbacks} / degraded {r.degraded} disagree with the members"
    return None


# ---- resources ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Resources:
    fds: int
    tasks: int | None
    children: int
    zombies: int
    child_pids: tuple[int, ...] = field(default=(), compare=False)
    task_names: tuple[str, ...] = field(default=(), compare=False)  # "name: coroutine at file:line"

    def leaks_vs(self, before: "Resources") -> list[str]:
        out = []
        if self.fds != before.fds:
            out.append(f"open file descriptors {before.fds} -> {self.fds}")
        if self.tasks is not None and before.tasks is not None and self.tasks != before.tasks:
            new = sorted(set(self.task_names) - set(before.task_names))
            out.append(f"asyncio tasks {before.tasks} -> {self.tasks}" + (f" (new: {'; '.join(new[:6])})" if new else ""))
        if self.children != before.children:
            out.append(f"child processes {before.children} -> {self.children}")
        if self.zombies:
            out.append(f"{self.zombies} zombie children")
        return out


def _children() -> list[tuple[int, str]]:
    me = os.getpid()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state ppid ...
        if int(fields[1]) == me:
            out.append((int(d), fields[0]))
    return out


def resources(count_tasks: bool = True) -> Resources:
    """This process's open fds, asyncio tasks (of the running loop, the caller's excluded),
    children and zombie children."""
    fds = len(os.listdir("/proc/self/fd")) - 1  # the listing's own fd
    tasks, names = None, ()
    if count_tasks:
        with contextlib.suppress(RuntimeError):
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            tasks, names = len(others), tuple(_describe(t) for t in others)
    kids = _children()
    return Resources(fds, tasks, len(kids), sum(1 for _, s in kids if s == "Z"), tuple(p for p, _ in kids), names)


def _describe(task: asyncio.Task) -> str:
    frames = task.get_stack(limit=1)
    where = f" at {Path(frames[0].f_code.co_filename).name}:{frames[0].f_lineno}" if frames else ""
    return f"{task.get_name()}: {getattr(task.get_coro(), '__qualname__', task.get_coro())}{where}"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def percentile(values, q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else None


# ---- a lean HTTP/1.1 client ----------------------------------------------------------------------

@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class HttpError(Exception):
    """The connection failed, closed early, or the answer was not HTTP/1.1."""


class LeanHttp:
    """One keep-alive HTTP/1.1 connection to a loopback server, one request at a time.

    A load generator's own CPU time competes with the server's on a small machine; httpx costs
    about ten times more per request than this. It parses strictly (status line, headers,
    Content-Length or chunked body) so a malformed answer is an HttpError, not a guess."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._r: asyncio.StreamReader | None = None
        self._w: asyncio.StreamWriter | None = None

    @classmethod
    def for_url(cls, url: str, headers: dict[str, str] | None = None) -> "LeanHttp":
        hostport = url.split("://", 1)[1].rstrip("/")
        host, port = hostport.rsplit(":", 1)
        return cls(host, int(port), headers)

    async def close(self) -> None:
        if self._w is not None:
            w, self._w, self._r = self._w, None, None
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()

    async def request(self, method: str, target: str, body: bytes = b"", content_type: str | None = None,
                      headers: dict[str, str] | None = None) -> HttpAnswer:
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.extra}"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        if body or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(body)}\r\n"
        for attempt in (0, 1):  # a keep-alive connection the server closed meanwhile: once more, fresh
            fresh = self._w is None
            try:
                if fresh:
                    self._r, self._w = await asyncio.open_connection(self.host, self.port)
                self._w.write(head.encode("latin-1") + b"\r\n" + body)  # HTTP/1.1 header bytes
                return await self._read()
            except (OSError, asyncio.IncompleteReadError, HttpError) as exc:
                await self.close()
                if fresh or attempt:
                    raise HttpError(f"{method} {target}: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    async def _read(self) -> HttpAnswer:
        r = self._r
        status_line = await r.readuntil(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or parts[0] != b"HTTP/1.1" or not parts[1].isdigit():
            raise HttpError(f"bad status line {status_line[:80]!r}")
        headers: dict[str, str] = {}
        while (line := await r.readuntil(b"\r\n")) != b"\r\n":
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise HttpError(f"bad header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while (size := int((await r.readuntil(b"\r\n")).split(b";")[0], 16)):
                body += await r.readexactly(size)
                await r.readexactly(2)
            await r.readuntil(b"\r\n")
        elif "content-length" in headers:
            body = await r.readexactly(int(headers["content-length"]))
        else:
            raise HttpError("answer without Content-Length or chunked body")
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return HttpAnswer(int(parts[1]), headers, body)
