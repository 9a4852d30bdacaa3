"""Deployment files: docker-compose.yml, the Dockerfile, the udev rules, the wheel's dashboard.

Docker's engine does not run here, so the compose file is checked against the Compose
Specification's JSON schema as vendored by check-jsonschema (`--builtin-schema
vendor.compose-spec`, no download), then for what the schema cannot know: hot-plug of serial
ports, and a virtual profile whose socket:// URLs name its own board services. Those board
commands are run for real, with the host build of the firmware, and classified through.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import ROOT, ZOO, need_module, zoo_models
from test_service import board_bin, raw, wait_for  # noqa: F401  (board_bin is a fixture)

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
RULES = ROOT / "deploy" / "udev" / "99-fleetvote.rules"
TTY_MAJORS = {"166": "ttyACM", "188": "ttyUSB"}


def load_compose() -> dict:
    need_module("ruamel.yaml")
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(COMPOSE.read_text())  # resolves the << merge keys


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ${VAR:-default} and ${VAR}, with an empty environment unless given one."""
    env = env or {}
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m[1]) or (m[2] or ""), value)


def environment(service: dict) -> dict[str, str | None]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


# ---- compose ----------------------------------------------------------------------------------
def check_jsonschema(path) -> subprocess.CompletedProcess:
    need_module("check_jsonschema")
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(path)], capture_output=True, text=True, timeout=60)


def test_compose_file_is_valid_against_the_compose_spec_schema():
    r = check_jsonschema(COMPOSE)
    assert r.returncode == 0, r.stdout + r.stderr


def test_compose_schema_check_catches_a_mistake(tmp_path):
    # the same file with one typo: proves the schema is applied, not just the YAML parsed
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(COMPOSE.read_text().replace("device_cgroup_rules:", "device_cgroups_rules:", 1))
    r = check_jsonschema(bad)
    assert r.returncode != 0 and "device_cgroups_rules" in r.stdout + r.stderr


def test_compose_real_boards_hot_plug_through_dev_and_the_tty_majors_only():
    svc = load_compose()["services"]["fleetvote"]
    assert "profiles" not in svc  # `docker compose up` starts it
    assert "/dev:/dev" in svc["volumes"]
    rules = svc["device_cgroup_rules"]
    for major in TTY_MAJORS:
        assert f"c {major}:* rmw" in rules
    assert all(re.fullmatch(r"c (166|188):\* rmw", r) for r in rules), rules
    assert not svc.get("privileged") and not svc.get("devices")
    assert svc["cap_drop"] == ["ALL"] and svc["read_only"] is True
    env = environment(svc)
    assert "FLEETVOTE_API_KEY" in env and env["FLEETVOTE_API_KEY"] is None  # passed through, never ""
    globs = json.loads(env["FLEETVOTE_LINK_GLOBS"])
    assert "/dev/fleetvote/*" in globs and any(g.startswith("/dev/serial/by-id/") for g in globs)


def test_compose_publishes_on_loopback_only():
    for name, svc in load_compose()["services"].items():
        for p in svc.get("ports", []):
            assert interpolate(p).startswith("127.0.0.1:"), (name, p)


def virtual_boards(compose: dict) -> dict[str, list[str]]:
    return {name: [interpolate(a) for a in svc["command"]] for name, svc in compose["services"].items()
            if "virtual" in svc.get("profiles", []) and svc.get("command")}


def test_compose_virtual_profile_service_urls_name_its_board_services():
    compose = load_compose()
    boards = virtual_boards(compose)
    assert len(boards) >= 1
    svc = compose["services"]["fleetvote-virtual"]
    assert svc["profiles"] == ["virtual"] and set(svc["depends_on"]) == set(boards)
    env = environment(svc)
    assert env["FLEETVOTE_SCAN_USB"] == "false" and json.loads(env["FLEETVOTE_LINK_GLOBS"]) == []
    urls = json.loads(env["FLEETVOTE_URLS"])
    assert sorted(urls) == sorted(f"socket://{name}:{cmd[cmd.index('--tcp') + 1]}" for name, cmd in boards.items())
    for name, cmd in boards.items():
        assert cmd[0] == "fleetvote-board" and cmd[cmd.index("--bind") + 1] == "0.0.0.0"
        assert (ZOO / cmd[cmd.index("--model") + 1] / "model.tflite").exists(), cmd
    assert len({cmd[cmd.index("--id") + 1] for cmd in boards.values()}) == len(boards)


async def test_compose_virtual_profile_runs_as_written(board_bin, tmp_path, monkeypatch, test_images):  # noqa: F811
    """The board commands of the virtual profile, with the binary and ports of this machine, and
    the service configured from the profile's own environment (as pydantic-settings reads it)."""
    import httpx

    from fleetvote.api.app import create_app
    from fleetvote.engine import Engine
    from fleetvote.settings import Settings
    from fleetvote.testbed.processes import stop_process

    compose = load_compose()
    boards = virtual_boards(compose)
    env = environment(compose["services"]["fleetvote-virtual"])
    urls = json.loads(env["FLEETVOTE_URLS"])
    procs, local = [], {}
    try:
        for name, cmd in boards.items():
            args = [str(board_bin)] + cmd[1:]
            args[args.index("--bind") + 1] = "127.0.0.1"  # loopback here; 0.0.0.0 in its container
            args[args.index("--tcp") + 1] = "0"  # any free port: the board prints the one it got
            p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)
            procs.append(p)
            line = p.stdout.readline().split()
            assert line and line[0] == "tcp", (args, line, p.poll())
            local[f"socket://{name}:{cmd[cmd.index('--tcp') + 1]}"] = f"socket://{line[1]}"
        for k, v in env.items():
            if v is not None:
                monkeypatch.setenv(k, v)
        ens = tmp_path / "ensemble.json"
        models = sorted({cmd[cmd.index("--model") + 1] for cmd in boards.values()})
        ens.write_text(json.dumps({"members": [{"id": m} for m in models], "strategy": "soft", "quorum": 1}))
        settings = Settings(ensemble=ens, zoo=ZOO, rescan_s=0.2)
        assert settings.urls == urls and settings.scan_usb is False and settings.link_globs == []
        settings.urls = [local[u] for u in settings.urls]
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                         timeout=30) as client:
                await wait_for(client, lambda b: len(b) == len(boards) and all(x["state"] == "ready" for x in b))
                r = (await client.post("/classify", **raw(test_images.x[5]))).json()
                assert all(m["source"] == "board" for m in r["members"])
                for m in r["members"]:
                    want = Engine.from_file(ZOO / m["model_id"] / "model.tflite").run(test_images.x[5])
                    assert np.array_equal(m["output"], want)
    finally:
        for p in procs:
            stop_process(p)


# ---- Dockerfile -----------------------------------------------------------------------------------
def dockerignored(rel: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule for a path relative to the context: patterns in order, the last
    one that matches the path or one of its parent folders wins, `!` re-includes; `*` and `?` stop
    at a `/`, `**` does not."""
    def regex(pattern: str) -> re.Pattern:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            else:
                out += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
                i += 1
        return re.compile(out + r"\Z")

    parts = rel.split("/")
    prefixes = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    ignored = False
    for raw_pattern in patterns:
        negate = raw_pattern.startswith("!")
        rx = regex(raw_pattern.lstrip("!").strip("/"))
        if any(rx.match(p) for p in prefixes):
            ignored = not negate
    return ignored


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def dockerfile_stages() -> list[list[str]]:
    """Each stage's instructions (continuation lines joined, comments dropped), FROM first."""
    text = "\n".join(x for x in DOCKERFILE.read_text().splitlines() if not x.lstrip().startswith("#"))
    instructions = [re.sub(r"\s+", " ", x).strip() for x in re.sub(r"\\\n", " ", text).splitlines() if x.strip()]
    stages: list[list[str]] = []
    for ins in instructions:
        if ins.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def test_build_context_is_the_package_and_firmware_sources_only():
    """No .git, .venv, build outputs (a stale host binary), runs, tests or docs: a small context,
    sent fast, whose COPY cache key changes only with the sources."""
    patterns = dockerignore_patterns()
    zoo = f"models/zoo/{zoo_models()[0].name}"  # any zoo model: its model is sent, its training log is not
    sent = {"pyproject.toml", "README.md", "service/fleetvote/app.py", f"{zoo}/model.tflite",
            "models/zoo/ensemble.json", "firmware/core/fv_app.c", "firmware/boards/catalog.json",
            "firmware/Makefile"}
    kept_out = {".git/config", ".venv/bin/python", "build/containers/summary.json", "firmware/build/host/board",
                "runs/x/log.jsonl", "tests/test_deploy.py", "docs/deploy.md", ".ci/run", "Dockerfile",
                "service/fleetvote/__pycache__/app.cpython-311.pyc", "service/fleetvote.egg-info/PKG-INFO",
                f"{zoo}/train_log.jsonl", "service/build/lib/fleetvote/app.py", "out/x"}
    assert {x for x in sent | kept_out if not dockerignored(x, patterns)} == sent
    # and the repository's own files: what is sent is exactly the sources under those five names
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        top = f.split("/")[0]
        assert dockerignored(f, patterns) == (top not in {"pyproject.toml", "README.md", "service", "models", "firmware"}
                                              or f.endswith("train_log.jsonl")), f


def test_dockerfile_has_one_copy_and_one_run_in_its_build_stage_and_no_run_in_its_runtime():
    """On vfs (a daemon in an unprivileged CI container) the legacy builder copies the whole file
    system for every instruction, metadata included: few instructions, the metadata over the bare
    base, everything the runtime needs in one last COPY."""
    stages = dockerfile_stages()
    assert len(stages) == 2 and stages[0][0].split()[-1] == "build"
    build, runtime = stages
    assert [x.split()[0] for x in build] == ["FROM", "COPY", "RUN"]
    assert build[1] == "COPY . /src"
    run = build[2]
    assert "gcc" in run and "make -C /src/firmware BOARD=host" in run
    assert "[train]" not in run and "tensorflow" not in run.lower()
    # the venv is made where it runs (its scripts name /opt/fleetvote/bin/python), then moved whole
    assert "python3 -m venv /opt/fleetvote" in run and "mv /opt/fleetvote /out/opt/fleetvote" in run
    assert "/src/firmware/build/host/board /out/usr/local/bin/fleetvote-board" in run
    assert "useradd" in run and "cp -p /etc/passwd /etc/group /etc/shadow /etc/gshadow /out/etc/" in run
    kinds = [x.split()[0] for x in runtime]
    assert "RUN" not in kinds and kinds.count("COPY") == 1
    assert runtime[-1] == "COPY --from=build /out/ /"  # last: a code change rebuilds one step here
    text = "\n".join(runtime)
    assert re.search(r"^USER fleetvote$", text, flags=re.M)
    assert "PATH=/opt/fleetvote/bin:" in text
    assert "FLEETVOTE_ZOO=/app/models/zoo" in text and "cp -r /src/models/zoo /out/app/models/zoo" in run


def test_dockerfile_builds_without_buildkit():
    """Debian's docker.io has no buildx: only instructions the legacy builder knows (make
    test-containers builds it with whichever builder is present)."""
    text = DOCKERFILE.read_text()
    assert not re.search(r"^\s*RUN\s+--mount", text, flags=re.M)  # BuildKit only
    assert not re.search(r"^# syntax=", text, flags=re.M)  # a frontend image to pull
    assert "<<" not in text  # heredocs: BuildKit only
    assert not re.search(r"^\s*(COPY|ADD)\s+--(link|parents|exclude)", text, flags=re.M)  # BuildKit only


def test_compose_virtual_profile_serves_every_ensemble_member_on_a_board():
    """So that the virtual service is ready (quorum) and stays ready with one board stopped."""
    members = [m["id"] for m in json.loads((ZOO / "ensemble.json").read_text())["members"]]
    quorum = json.loads((ZOO / "ensemble.json").read_text())["quorum"]
    served = [cmd[cmd.index("--model") + 1] for cmd in virtual_boards(load_compose()).values()]
    assert sorted(served) == sorted(members)
    assert len(set(served)) - 1 >= quorum


def test_image_ships_the_board_catalogue_the_service_takes_its_usb_ids_from():
    build, runtime = dockerfile_stages()
    m = re.search(r"cp /src/firmware/boards/catalog\.json /out(\S+)", build[-1])
    assert m and f"FLEETVOTE_CATALOG={m[1]}" in "\n".join(runtime)


def test_wheel_ships_the_dashboard(tmp_path):
    """The image installs a wheel, not the source tree: the page must be package data."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.tflite", "train_log.jsonl")
    shutil.copytree(ROOT / "service", src / "service", ignore=ignore)
    shutil.copytree(ROOT / "models", src / "models", ignore=ignore)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (wheel,) = (tmp_path / "dist").glob("fleetvote-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    static = sorted(p.name for p in (ROOT / "service" / "fleetvote" / "api" / "static").iterdir())
    assert static and {f"fleetvote/api/static/{n}" for n in static} <= names, names


# ---- udev -----------------------------------------------------------------------------------------
# KEY op "VALUE", KEY{attr} op "VALUE"; the keys this file may use, and which of them match
_PAIR = re.compile(r'(?P<key>[A-Z_]+)(?:\{(?P<attr>[A-Za-z0-9_.]+)\})?\s*(?P<op>==|!=|\+=|-=|:=|=)\s*"(?P<value>[^"]*)"')
_MATCH_KEYS = {"ACTION", "SUBSYSTEM", "SUBSYSTEMS", "KERNEL", "KERNELS", "ATTR", "ATTRS", "ENV", "DRIVERS", "TAG"}
_ASSIGN_KEYS = {"ENV", "GROUP", "MODE", "OWNER", "SYMLINK", "TAG", "GOTO", "LABEL", "RUN", "IMPORT"}


def rules() -> list[list[dict]]:
    out = []
    for n, line in enumerate(RULES.read_text().splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        assert not s.endswith("\\"), f"line {n}: no continuation lines"
        pairs, pos = [], 0
        while pos < len(s):
            m = _PAIR.match(s, pos)
            assert m, f"line {n}: cannot parse at {s[pos:]!r}"
            pairs.append(m.groupdict())
            pos = m.end()
            if pos < len(s):
                assert s[pos:pos + 2] == ", ", f"line {n}: pairs are separated by ', ' at {s[pos:]!r}"
                pos += 2
        for p in pairs:
            key, op = p["key"], p["op"]
            if op in ("==", "!="):
                assert key in _MATCH_KEYS, f"line {n}: {key} cannot be matched"
            else:
                assert key in _ASSIGN_KEYS, f"line {n}: {key} cannot be assigned"
            assert (p["attr"] is not None) == (key in {"ATTR", "ATTRS", "ENV", "IMPORT"}), f"line {n}: {key}"
        out.append(pairs)
    return out


def test_udev_rules_parse_as_key_op_value_pairs_and_every_goto_has_its_label():
    parsed = rules()
    gotos = {p["value"] for r in parsed for p in r if p["key"] == "GOTO"}
    labels = [p["value"] for r in parsed for p in r if p["key"] == "LABEL"]
    assert gotos and gotos <= set(labels) and len(labels) == len(set(labels))
    assert all(v.startswith("fleetvote_") for v in labels)  # no clash with other rule files


def test_udev_rules_cover_every_stlink_vcp_with_group_mode_modemmanager_and_a_link():
    from fleetvote.catalog import usb_ids as catalogue_usb_ids

    parsed = rules()
    tty_ids, usb_ids = set(), set()
    for r in parsed:
        d = {(p["key"], p["attr"], p["op"]): p["value"] for p in r}
        ident = (d.get(("ATTRS", "idVendor", "==")) or d.get(("ATTR", "idVendor", "==")),
                 d.get(("ATTRS", "idProduct", "==")) or d.get(("ATTR", "idProduct", "==")))
        if ident[0] is None:
            continue
        assert ident == tuple(x.lower() for x in ident), "sysfs ids are lower case"
        (tty_ids if d.get(("SUBSYSTEM", None, "==")) == "tty" else usb_ids).add(":".join(ident))
    wanted = {x.lower() for x in catalogue_usb_ids()}
    assert tty_ids == wanted and usb_ids == wanted

    text = RULES.read_text()
    vcp = text[text.index('LABEL="fleetvote_vcp"'):text.index('LABEL="fleetvote_stlink"')]
    assert 'ENV{ID_MM_DEVICE_IGNORE}="1"' in vcp and 'GROUP="dialout"' in vcp and 'MODE="0660"' in vcp
    assert 'SYMLINK+="fleetvote/$env{ID_SERIAL_SHORT}-if$env{ID_USB_INTERFACE_NUM}"' in vcp


def test_deploy_doc_names_files_that_exist_and_the_stlink_by_id_patterns():
    doc = (ROOT / "docs" / "deploy.md").read_text()
    for path in set(re.findall(r"`((?:deploy|docs|firmware|tests)/[\w./-]+|Dockerfile|docker-compose\.yml)`", doc)):
        assert (ROOT / path).exists(), path
    assert "/dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_" in doc
    assert "/dev/serial/by-id/usb-STMicroelectronics_STLINK-V3_" in doc
    assert re.search(r"^st-flash .*write firmware\.bin 0x08000000", doc, flags=re.M)
    assert re.search(r"^openocd .*interface/stlink\.cfg", doc, flags=re.M)


def test_container_run_adapts_the_compose_file_for_docker_compose_1_29_and_host_networking(tmp_path):
    """make test-containers (tests/containers.py) runs this compose file with Debian's
    docker-compose 1.29: its adaptation must still apply, and change nothing else."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("containers", ROOT / "tests" / "containers.py")
    containers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(containers)
    text = COMPOSE.read_text()
    adapted = containers.compose_for_v1(text)
    need_module("ruamel.yaml")
    from ruamel.yaml import YAML

    before, after = YAML(typ="safe").load(text), YAML(typ="safe").load(adapted)
    assert "name" in before and "name" not in after
    assert "ports" in before["services"]["fleetvote-virtual"] and "ports" not in after["services"]["fleetvote-virtual"]
    before["services"]["fleetvote-virtual"].pop("ports")
    assert after["services"] == before["services"]
    with pytest.raises(SystemExit, match="docker-compose.yml changed"):
        containers.compose_for_v1(text.replace("name: fleetvote\n", ""))


def test_ci_runs_the_container_check_after_make_test_and_make_test_does_not():
    """.ci/run: `make test`, then `make test-containers` (minutes, root, a daemon); nothing of
    the container check inside `make test` (pytest does not collect tests/containers.py, and the
    test target's recipe does not name it)."""
    ci = [x.strip() for x in (ROOT / ".ci" / "run").read_text().splitlines() if x.strip() and not x.startswith("#")]
    assert "make test" in ci and "make test-containers" in ci
    assert ci.index("make test") < ci.index("make test-containers")
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test:[^\n]*\n((?:\t[^\n]*\n)*)", makefile, flags=re.M)
    assert recipe and "containers" not in recipe[0]
    assert re.search(r"^test-containers:[^\n]*\n\tpython3 tests/containers\.py", makefile, flags=re.M)
    # pytest's default python_files (test_*.py, *_test.py) unless pyproject.toml sets its own
    assert "python_files" not in (ROOT / "pyproject.toml").read_text()
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", str(ROOT / "tests")],
                               cwd=ROOT, capture_output=True, text=True, timeout=300).stdout
    assert "containers.py" not in collected and "test_deploy.py" in collected


FAKE_DOCKER = r"""#!/usr/bin/env bash
# a docker CLI that records its calls; image ids in $STATE/<tag>, changed by a build unless SAME=1
echo "DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-} $*" >> "$STATE/calls"
case "$1 $2" in
  "buildx version") [[ ${BUILDX:-0} == 1 ]] ;;
  "version -f") echo "${CLIENT:-28.2.2}" ;;
  "image inspect") tag="${@: -1}"; [[ -f "$STATE/$tag" ]] && cat "$STATE/$tag" ;;
  "image rm") ;;
  *) tag=""; prev=""; for a in "$@"; do [[ $prev == -t ]] && tag=$a; prev=$a; done
     if [[ -n $tag && ${SAME:-0} != 1 ]]; then echo "new-$tag" > "$STATE/$tag"; fi ;;
esac
"""


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("containers", ROOT / "tests" / "containers.py")
    containers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(containers)
    docker = tmp_path / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    monkeypatch.setenv("STATE", str(tmp_path))
    for tag in (containers.BUILD_TAG, containers.IMAGE):
        (tmp_path / tag).write_text(f"old-{tag}\n")

    def calls() -> list[str]:
        return (tmp_path / "calls").read_text().splitlines()
    return containers, str(docker), calls


def test_container_build_removes_the_images_a_changed_build_replaced_and_nothing_else(fake_docker, monkeypatch):
    containers, docker, calls = fake_docker
    assert containers.build(docker, "fleetvote-base:bookworm") == "legacy builder"
    builds = [c for c in calls() if " build " in f" {c} "]
    assert builds == [f"DOCKER_BUILDKIT=0 build --network host --build-arg PYTHON_IMAGE=fleetvote-base:bookworm "
                      f"--target build -t fleetvote-build:latest {ROOT}",
                      f"DOCKER_BUILDKIT=0 build --network host --build-arg PYTHON_IMAGE=fleetvote-base:bookworm "
                      f"-t fleetvote:latest {ROOT}"]
    removed = sorted(c.split()[-1] for c in calls() if " image rm " in c)
    assert removed == ["old-fleetvote-build:latest", "old-fleetvote:latest"]


def test_container_build_from_the_cache_removes_nothing(fake_docker, monkeypatch):
    containers, docker, calls = fake_docker
    monkeypatch.setenv("SAME", "1")
    containers.build(docker, "fleetvote-base:bookworm")
    assert not [c for c in calls() if " image rm " in c]


def test_container_build_takes_buildkit_from_buildx_or_a_cli_that_has_it_built_in(fake_docker, monkeypatch):
    containers, docker, calls = fake_docker
    monkeypatch.setenv("BUILDX", "1")
    def last_build() -> str:
        return [c for c in calls() if " build " in f" {c} "][-1]

    assert containers.build(docker, "b") == "BuildKit (buildx)"
    assert last_build().startswith("DOCKER_BUILDKIT=1 buildx build --load --network host")
    monkeypatch.setenv("BUILDX", "0")
    monkeypatch.setenv("CLIENT", "20.10.24+dfsg1")
    assert containers.build(docker, "b", "buildkit") == "BuildKit (DOCKER_BUILDKIT=1)"
    assert last_build().startswith("DOCKER_BUILDKIT=1 build --network host")
    monkeypatch.setenv("CLIENT", "28.2.2")  # BuildKit only through buildx: a clear error, no build
    n = len(calls())
    with pytest.raises(SystemExit, match="neither buildx nor BuildKit built in: install docker-buildx"):
        containers.build(docker, "b", "buildkit")
    assert not [c for c in calls()[n:] if " build " in f" {c} "]
