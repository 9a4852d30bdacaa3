"""The Dockerfile and the compose file's virtual profile, built and run for real: `make test-containers`.

    python tests/containers.py [--base-root DIR] [--data-root DIR] [--builder auto|legacy|buildkit] [--docker CLI]

Steps, each timed (a JSON summary goes to build/containers/summary.json):

1. Debian's docker.io and docker-compose, installed when missing (as root; otherwise the apt-get
   line to run, and exit 2).
2. A daemon: the one that answers `docker info`, else one started here (niced, vfs storage, no
   iptables, no default bridge: what runs in an unprivileged CI container) and stopped at the end.
3. The base image: python:3.11-slim-bookworm when present, else a stand-in made earlier, else
   the registry's when it can be pulled, else a stand-in with the same Python 3.11 on Debian 12,
   made with `debootstrap --variant=minbase` (python3, python3-venv, ca-certificates, passwd;
   slimmed as debian:bookworm-slim is) and `docker import` (pip made to install into it, and the
   host's CA bundle, so that pip inside the build trusts the same TLS as the host).
4. The image, with whichever builder is present: `docker buildx build --load` (BuildKit), else
   the legacy builder (`DOCKER_BUILDKIT=0`), or the one --builder names (buildkit without buildx:
   `DOCKER_BUILDKIT=1`, which a CLI before 23.0 has built in); the build stage tagged too, so that the images a
   changed build replaced are removed (vfs: each a full copy). Build time, size, layers.
5. The compose file's virtual profile, run by docker-compose with host networking (an override
   file written here: the daemon has no bridge, so each board listens on its own loopback port,
   and the service's URLs name those ports instead of the compose DNS names): /readyz ready;
   classifications answered by the board containers (GET /boards names each board's container
   id); `stop board-1`: its member falls back to the engine; `start board-1`: served by its board
   again; `down -v`: no container, network or volume of the project left.

Standard library only, so that it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "containers"
BASE_TAG = "fleetvote-base:bookworm"  # the stand-in's tag, never the registry's name
REGISTRY_BASE = "python:3.11-slim-bookworm"
IMAGE = "fleetvote:latest"
BUILD_TAG = "fleetvote-build:latest"  # the Dockerfile's build stage (the cache of its slow step)
PACKAGES = ("docker.io", "docker-compose")
BOARDS = 5  # board-1 ... board-5 in docker-compose.yml's virtual profile
timings: dict[str, float] = {}


def step(name: str):
    class _T:
        def __enter__(self):
            print(f"== {name}", flush=True)
            self.t0 = time.monotonic()

        def __exit__(self, *exc):
            timings[name] = round(time.monotonic() - self.t0, 1)
            print(f"   {name}: {timings[name]} s", flush=True)
    return _T()


def run(*args, check=True, capture=False, env=None, timeout=None, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(list(map(str, args)), text=True, capture_output=capture, env=env, timeout=timeout, **kw)
    if check and r.returncode != 0:
        sys.exit(f"containers: {' '.join(map(str, args))} failed ({r.returncode})"
                 + (f":\n{r.stdout}{r.stderr}" if capture else ""))
    return r


def ensure_packages() -> None:
    missing = [p for p in PACKAGES
               if "install ok installed" not in run("dpkg-query", "-W", "-f=${Status}", p, check=False, capture=True).stdout]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"containers: missing {' '.join(missing)}: sudo apt-get install --no-install-recommends {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run("apt-get", "update", "-q", env=env, capture=True)
    run("apt-get", "install", "-y", "-q", "--no-install-recommends", *missing, env=env, capture=True)


def docker_ok(docker: str) -> bool:
    return run(docker, "info", check=False, capture=True).returncode == 0


def start_daemon(docker: str, data_root: Path) -> subprocess.Popen | None:
    """None when a daemon answers already; else a dockerd started here (the caller stops it)."""
    if docker_ok(docker):
        return None
    OUT.mkdir(parents=True, exist_ok=True)
    log = open(OUT / "dockerd.log", "ab")
    # vfs: no overlay mounts needed (works inside an unprivileged container, at the cost of a full
    # copy of the image per container); no iptables and no default bridge: host networking
    proc = subprocess.Popen(["nice", "-n", "10", "dockerd", "--storage-driver=vfs", "--iptables=false",
                             "--bridge=none", f"--data-root={data_root}", f"--pidfile={OUT / 'dockerd.pid'}"],
                            stdout=log, stderr=log, start_new_session=True)
    for _ in range(120):
        if docker_ok(docker):
            return proc
        if proc.poll() is not None:
            sys.exit(f"containers: dockerd exited with {proc.returncode}: see {OUT / 'dockerd.log'} (it needs "
                     "root; inside a container, one run with --privileged)")
        time.sleep(0.5)
    stop_daemon(proc)
    sys.exit(f"containers: dockerd did not answer in 60 s: see {OUT / 'dockerd.log'}")


def stop_daemon(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)  # dockerd and the containerd it started, by its group
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# what Debian's slim images leave out (debian:bookworm-slim's /etc/dpkg/dpkg.cfg.d/docker): fewer
# files in the base means a faster copy for every container and layer on vfs
SLIM_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*",
                 "/usr/share/groff/*", "/usr/share/lintian/*", "/usr/share/linda/*")


def base_image(docker: str, base_root: Path) -> str:
    """The Python base image the Dockerfile's PYTHON_IMAGE names: the registry's when present,
    else a stand-in made earlier, else the registry's pulled, else a stand-in made now."""
    if run(docker, "image", "inspect", REGISTRY_BASE, check=False, capture=True).returncode == 0:
        return REGISTRY_BASE
    # before the pull: a cached run must not wait on a registry that cannot be reached
    if run(docker, "image", "inspect", BASE_TAG, check=False, capture=True).returncode == 0:
        return BASE_TAG
    with step("base: pull " + REGISTRY_BASE):
        try:
            if run(docker, "pull", REGISTRY_BASE, check=False, capture=True, timeout=90).returncode == 0:
                return REGISTRY_BASE
        except subprocess.TimeoutExpired:
            pass
    print(f"   {REGISTRY_BASE} cannot be pulled: a stand-in from debootstrap in {base_root}", flush=True)
    if not (base_root / "usr" / "bin" / "python3").exists():
        if shutil.which("debootstrap") is None:
            if os.geteuid() != 0:
                sys.exit("containers: debootstrap is missing: sudo apt-get install debootstrap")
            run("apt-get", "install", "-y", "-q", "--no-install-recommends", "debootstrap", capture=True,
                env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        with step("base: debootstrap"):
            # python3-venv: the Dockerfile's venv (its own pip, from Debian's bundled wheel: no
            # python3-pip, which would bring setuptools, wheel and distutils for nothing);
            # passwd: useradd; ca-certificates: pip's TLS
            run("debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates,passwd",
                "bookworm", base_root, "http://deb.debian.org/debian", capture=True)
    # as in python:3.11-slim, pip may install outside Debian's own packages (PEP 668's marker
    # off), `python` is python3, and the host's CA bundle is trusted (a TLS-inspecting proxy's CA)
    for marker in (base_root / "usr" / "lib").glob("python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    python = base_root / "usr" / "local" / "bin" / "python"
    if not python.exists():
        python.symlink_to("/usr/bin/python3")
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", base_root / "etc" / "ssl" / "certs" / "ca-certificates.crt")
    # slim, as debian:bookworm-slim is: no docs, man pages or translations, now or from the
    # build stage's apt-get (dpkg's path excludes), no package lists or caches
    (base_root / "etc" / "dpkg" / "dpkg.cfg.d" / "slim").write_text(
        "".join(f"path-exclude {g}\n" for g in SLIM_EXCLUDES) + "path-include /usr/share/doc/*/copyright\n")
    for glob in SLIM_EXCLUDES + ("/var/lib/apt/lists/*", "/var/cache/apt/*", "/var/cache/debconf/*-old",
                                 "/var/log/*.log", "/var/log/apt/*"):
        for path in base_root.glob(glob.lstrip("/")):
            if glob == "/usr/share/doc/*" and path.is_dir() and not path.is_symlink():
                for doc in path.iterdir():  # the licences stay
                    if doc.name != "copyright":
                        shutil.rmtree(doc) if doc.is_dir() and not doc.is_symlink() else doc.unlink()
            elif path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    (base_root / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (base_root / "var" / "lib" / "apt" / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    with step("base: docker import"):
        tar = subprocess.Popen(["tar", "-C", str(base_root), "-c", "."], stdout=subprocess.PIPE)
        run(docker, "import", "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]', "-", BASE_TAG,
            stdin=tar.stdout, capture=True)
        tar.wait()
    return BASE_TAG


def image_id(docker: str, tag: str) -> str | None:
    r = run(docker, "image", "inspect", "-f", "{{.Id}}", tag, check=False, capture=True)
    return r.stdout.strip() if r.returncode == 0 else None


def build(docker: str, base: str, builder: str = "auto") -> str:
    """The image, with whichever builder is present. The build stage is tagged too (BUILD_TAG):
    so that the images an earlier build made, and this one replaced, can be told from this
    build's cache and removed (on vfs each is a full copy: a data root would grow by gigabytes
    per changed commit), and nothing else on the daemon is touched."""
    buildx = run(docker, "buildx", "version", check=False, capture=True).returncode == 0
    if builder == "legacy":
        buildx = False
    args = ["buildx", "build", "--load"] if buildx else ["build"]
    # BuildKit without buildx: a CLI before 23.0 (Debian 12's docker.io, 20.10) has it built in
    kit = buildx or builder == "buildkit"
    env = dict(os.environ, DOCKER_BUILDKIT="1" if kit else "0")
    if kit and not buildx and run(docker, "version", "-f", "{{.Client.Version}}", check=False,
                                  capture=True).stdout.strip().split(".")[0] not in ("18", "19", "20"):
        sys.exit(f"containers: {docker} has neither buildx nor BuildKit built in: install docker-buildx, or "
                 "--docker /usr/bin/docker (Debian's, 20.10)")
    before = {tag: image_id(docker, tag) for tag in (BUILD_TAG, IMAGE)}
    # host networking: apt and pip inside the build reach the registries as the host does
    common = [*args, "--network", "host", "--build-arg", f"PYTHON_IMAGE={base}"]
    run(docker, *common, "--target", "build", "-t", BUILD_TAG, ROOT, env=env)
    run(docker, *common, "-t", IMAGE, ROOT, env=env)  # the build stage: all from the cache now
    for tag, was in before.items():
        if was is not None and was != image_id(docker, tag):  # replaced: with its untagged parents
            run(docker, "image", "rm", was, check=False, capture=True)
    return "BuildKit (buildx)" if buildx else "BuildKit (DOCKER_BUILDKIT=1)" if kit else "legacy builder"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def http(method: str, url: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"content-type": "application/octet-stream"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}


def until(what: str, check, timeout: float = 120.0, every: float = 0.5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise SystemExit(f"containers: {what}: not within {timeout:.0f} s")


def image_bytes(i: int) -> bytes:
    return bytes((i * 37 + k * 11) % 256 for k in range(32 * 32 * 3))  # any 32x32x3 uint8 image


def compose_run(compose: list[str]) -> dict:
    ports = free_ports(BOARDS + 1)
    svc_port, board_ports = ports[0], ports[1:]
    # each board's model as the compose file (or its variable) sets it, this run's port on loopback
    text = (ROOT / "docker-compose.yml").read_text()
    models, override = {}, {"services": {}}
    for i in range(1, BOARDS + 1):
        m = re.search(rf"FLEETVOTE_BOARD{i}_MODEL:-([\w.-]+)\}}", text)
        models[i] = os.environ.get(f"FLEETVOTE_BOARD{i}_MODEL") or m[1]
        override["services"][f"board-{i}"] = {"network_mode": "host", "command": [
            "fleetvote-board", "--model", models[i], "--id", f"compose-board-{i}",
            "--tcp", str(board_ports[i - 1]), "--bind", "127.0.0.1"]}
    override["services"]["fleetvote-virtual"] = {
        "network_mode": "host",
        "environment": {"FLEETVOTE_URLS": json.dumps([f"socket://127.0.0.1:{p}" for p in board_ports]),
                        "FLEETVOTE_HOST": "127.0.0.1", "FLEETVOTE_PORT": str(svc_port)},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "compose.host.yml").write_text(json.dumps(override, indent=2))  # JSON is YAML
    base = f"http://127.0.0.1:{svc_port}"
    services = [f"board-{i}" for i in range(1, BOARDS + 1)] + ["fleetvote-virtual"]
    result: dict = {"models": models}
    with step("compose up (virtual profile) until /readyz is ready"):
        run(*compose, "--profile", "virtual", "up", "-d", "--no-build", *services)
        until("/readyz ready", lambda: http("GET", base + "/readyz")[0] == 200)

    def all_ready():
        boards = http("GET", base + "/boards")[1].get("boards")
        ok = isinstance(boards, list) and sum(b["state"] in ("ready", "busy") for b in boards) == BOARDS
        return boards if ok else None

    with step(f"all {BOARDS} board containers ready"):
        by_model = {b["model_id"]: b for b in until(f"{BOARDS} boards ready", all_ready)}
    # each member's board is the container started with that model, on that container's port
    for i, model in models.items():
        assert by_model[model]["url"] == f"socket://127.0.0.1:{board_ports[i - 1]}", (model, by_model[model])
    with step("classify 10 images, every member on its board container"):
        for k in range(10):
            status, r = http("POST", base + "/classify", image_bytes(k))
            assert status == 200, (status, r)
            srcs = {m["model_id"]: (m["source"], m["board_id"]) for m in r["members"]}
            assert all(s == "board" for s, _ in srcs.values()), srcs
            assert {m: b for m, (_, b) in srcs.items()} == {m: by_model[m]["board_id"] for m in srcs}, srcs
    victim = models[1]

    def source_of_victim(want: str):
        status, r = http("POST", base + "/classify", image_bytes(0))
        return status == 200 and any(m["model_id"] == victim and m["source"] == want for m in r["members"])

    with step("stop board-1: its member falls back to the engine"):
        run(*compose, "--profile", "virtual", "stop", "board-1")
        until(f"{victim} answered by the fallback", lambda: source_of_victim("fallback"))
    status, ready = http("GET", base + "/readyz")
    result["readyz_with_one_board_stopped"] = status
    with step("start board-1: its member served by its board again"):
        run(*compose, "--profile", "virtual", "start", "board-1")
        until(f"{victim} answered by its board", lambda: source_of_victim("board"))
    with step("compose down -v"):
        run(*compose, "--profile", "virtual", "down", "-v", "--remove-orphans")
    return result


def compose_for_v1(text: str) -> str:
    """docker-compose.yml as docker-compose 1.29 (Debian 12) runs it with host networking: it
    predates the Compose Specification's top-level `name:` (the project is named by -p), and
    refuses published ports beside host networking (the service binds the host's loopback
    itself). Exits when the compose file no longer has those two lines where expected."""
    text, n_name = re.subn(r"^name: .*\n", "", text, count=1, flags=re.M)
    text, n_ports = re.subn(r"^    ports: \[\"127\.0\.0\.1:\$\{FLEETVOTE_VIRTUAL_PORT.*\n", "", text, count=1, flags=re.M)
    if (n_name, n_ports) != (1, 1):
        sys.exit("containers: docker-compose.yml changed: its name: or fleetvote-virtual's ports: line is not where "
                 "tests/containers.py looks for them")
    return text


def leftovers(docker: str, project: str) -> dict[str, list[str]]:
    label = f"label=com.docker.compose.project={project}"
    return {kind: run(docker, *cmd, "--filter", label, "-q", capture=True).stdout.split()
            for kind, cmd in (("containers", ["ps", "-a"]), ("networks", ["network", "ls"]),
                              ("volumes", ["volume", "ls"]))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-root", type=Path, default=Path("/var/tmp/fleetvote-base-root"),
                   help="debootstrap root of the stand-in base image, outside the work tree (default %(default)s)")
    p.add_argument("--data-root", type=Path, default=Path("/var/lib/docker"),
                   help="data root of a daemon started here (default %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the image (default: keep it too; it is the cache)")
    p.add_argument("--builder", choices=("auto", "legacy", "buildkit"), default="auto",
                   help="auto: BuildKit through buildx when present, else the legacy builder (default)")
    p.add_argument("--docker", default=shutil.which("docker") or "docker",
                   help="the docker CLI (default: the first on PATH, %(default)s)")
    a = p.parse_args(argv)
    for d in (a.base_root, a.data_root):
        if ROOT in d.resolve().parents:
            sys.exit(f"containers: {d} is inside the work tree: put it elsewhere (/var/tmp, /var/lib)")
    with step("packages (docker.io, docker-compose)"):
        ensure_packages()
    docker = a.docker
    with step("daemon"):
        daemon = start_daemon(docker, a.data_root)
    project = f"fleetvote-ci-{os.getpid()}"
    OUT.mkdir(parents=True, exist_ok=True)
    text = compose_for_v1((ROOT / "docker-compose.yml").read_text())
    (OUT / "docker-compose.yml").write_text(text)
    compose = ["docker-compose", "-p", project, "--project-directory", str(ROOT),
               "-f", str(OUT / "docker-compose.yml"), "-f", str(OUT / "compose.host.yml")]
    summary: dict = {"daemon": "started here" if daemon else "already running"}
    try:
        with step("base image"):
            summary["base"] = base_image(docker, a.base_root)
        with step("image build"):
            summary["builder"] = build(docker, summary["base"], a.builder)
        summary["image_bytes"] = int(run(docker, "image", "inspect", "-f", "{{.Size}}", IMAGE, capture=True).stdout)
        # instructions that made a layer of their own (the rest are metadata: empty layers)
        sizes = run(docker, "history", "--no-trunc", "--format", "{{.Size}}", IMAGE, capture=True).stdout.split()
        summary["image_layers"] = sum(x not in ("0B", "0") for x in sizes)
        try:
            summary.update(compose_run(compose))
        finally:
            if (OUT / "compose.host.yml").exists():
                run(*compose, "--profile", "virtual", "down", "-v", "--remove-orphans", check=False, capture=True)
        left = leftovers(docker, project)
        summary["left_after_down"] = left
        assert not any(left.values()), left
    finally:
        with step("daemon stopped" if daemon else "daemon left running (not started here)"):
            stop_daemon(daemon)
        summary["timings_s"] = timings
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"containers: OK: image {summary['image_bytes'] / 1e6:.0f} MB built in {timings['image build']} s "
          f"({summary['builder']}, base {summary['base']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
