"""The dashboard at / in headless Chromium, against the real service on a loopback port with
virtual boards (the host build of the firmware on ptys).

Chromium and ChromeDriver are Debian's (packages chromium, chromium-driver): the test never
downloads a browser. Screenshots go to build/ui/ (gitignored).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest
from PIL import Image

from conftest import ROOT, ZOO, need, need_module, need_tool
from test_service import board_bin, member_ids  # noqa: F401  (board_bin is a fixture)

SHOTS = ROOT / "build" / "ui"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--no-first-run", "--no-default-browser-check",
    "--disable-domain-reliability", "--disable-client-side-phishing-detection", "--no-pings",
    "--metrics-recording-only", "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--window-size=1400,1000",
]


# ---- the service ---------------------------------------------------------------------------------
@dataclass
class Served:
    url: str
    app: object
    ids: list[str]
    boards: list = field(default_factory=list)


@pytest.fixture(scope="module")
def served(board_bin, tmp_path_factory):  # noqa: F811
    """uvicorn in a thread on a socket we bound (no port race), one virtual board per member."""
    import uvicorn

    from fleetvote.api.app import create_app
    from fleetvote.settings import Settings
    from fleetvote.testbed.processes import stop_process
    from fleetvote.testbed.virtual import start_board

    tmp = tmp_path_factory.mktemp("ui")
    ids = member_ids(2)
    ens = tmp / "ensemble.json"
    # a cascade whose stage 1 (the first member) always answers alone; the default mode stays all
    ens.write_text(json.dumps({"members": [{"id": i} for i in ids], "strategy": "soft", "quorum": 1,
                               "cascade": {"stage1": ids[:1], "threshold": 0.0, "agree": True}}))
    links = tmp / "boards"
    out = Served("", None, ids)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = thread = None
    try:
        out.boards = [start_board(m, f"ui-{k}", link=links / f"b{k}-{m}") for k, m in enumerate(ids)]
        settings = Settings(ensemble=ens, zoo=ZOO, urls=[], link_globs=[str(links / "*")], scan_usb=False,
                            rescan_s=0.2, ping_interval_s=0.5)
        out.app = create_app(settings)
        server = uvicorn.Server(uvicorn.Config(out.app, log_level="warning", log_config=None, lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
            time.sleep(0.05)
        out.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        yield out
    finally:
        if server is not None:
            server.should_exit = True
            thread.join(15)
        sock.close()
        for b in out.boards:
            stop_process(b.process)


# ---- the browser ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    need(chromium is not None, "chromium is not installed (Debian package chromium)")
    driver_path = need_tool("chromedriver")
    need_module("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager is skipped anyway (explicit paths)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver and browser: Selenium Manager is never asked to find or fetch either
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, predicate, timeout=15.0, what="condition"):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: predicate(d))
    except Exception as exc:
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / "failure.png"))
        raise AssertionError(f"timed out waiting for {what}; page: "
                             f"{driver.find_element('tag name', 'body').text[:2000]}") from exc


def fleet_rows(driver) -> list[dict]:
    return driver.execute_script("""
        return [...document.querySelectorAll('#fleet tbody tr.board')].map(tr => ({
            url: tr.dataset.url, state: tr.dataset.state,
            model: tr.querySelector('td.model').textContent}));""")


def answer(driver) -> dict | None:
    return driver.execute_script("""
        const shown = (e) => e.getClientRects().length > 0;  // rendered, whatever hides it
        const r = document.getElementById('result');
        if (!shown(r)) return null;
        return {label: r.dataset.label, text: document.getElementById('answer-label').textContent,
                degraded: shown(document.getElementById('answer-degraded')),
                members: [...document.querySelectorAll('#members tbody tr')].map(tr => ({
                    model: tr.dataset.model, source: tr.dataset.source,
                    vote: tr.querySelector('td.vote').childNodes[0].textContent.trim(),
                    sourceText: tr.querySelector('td.source').textContent,
                    bars: tr.querySelectorAll('.spark span').length}))};""")


DROP = """
    const [b64, name] = arguments;
    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], name, {type: 'image/png'}));
    const zone = document.getElementById('drop');
    for (const type of ['dragenter', 'dragover', 'drop'])
        zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
"""


def png(img) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def drop_and_wait(driver, data: bytes) -> dict:
    driver.execute_script("document.getElementById('result').dataset.label = '';")
    driver.execute_script(DROP, base64.b64encode(data).decode(), "cifar.png")
    return wait(driver, lambda d: (a := answer(d)) and a["label"] != "" and a, what="the answer")


def screenshot(driver, name: str) -> None:
    """The whole page, not just the window."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, max(900, int(height) + 140))
    driver.save_screenshot(str(SHOTS / name))


def severe_logs(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


# ---- the tests -----------------------------------------------------------------------------------
def test_dashboard_files_are_served_with_a_strict_content_security_policy(served):
    with httpx.Client(base_url=served.url, timeout=10) as c:
        r = c.get("/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert 'id="drop"' in r.text and 'id="fleet"' in r.text
        assert c.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
        assert c.get("/ui/style.css").headers["content-type"].startswith("text/css")
        for bad in ("/ui/nope.js", "/ui/..%2Fapp.py", "/ui/%2e%2e%2f%2e%2e%2fsettings.py"):
            assert c.get(bad).status_code == 404, bad


def test_dashboard_shows_the_fleet_and_the_votes_of_a_dropped_image_and_its_fallbacks(
        served, browser, test_images):
    from fleetvote.testbed.virtual import start_board

    d = browser
    d.get(served.url + "/")
    rows = wait(d, lambda d: (r := fleet_rows(d)) and len(r) == len(served.ids)
                and all(x["state"] == "ready" for x in r) and r, what="a ready fleet")
    assert sorted(x["model"].split("votes")[0] for x in rows) == sorted(served.ids)

    data = png(test_images.x[3])
    a = drop_and_wait(d, data)
    api = httpx.post(served.url + "/classify", files={"file": ("cifar.png", data, "image/png")}, timeout=30).json()
    assert a["label"] == str(api["label"]) and a["text"] == api["class_name"]
    assert [m["model"] for m in a["members"]] == [m["model_id"] for m in api["members"]]
    assert [m["vote"] for m in a["members"]] == [m["class_name"] for m in api["members"]]
    assert all(m["source"] == "board" and m["bars"] == 10 for m in a["members"])
    assert a["degraded"] is False
    screenshot(d, "screenshot.png")
    assert not severe_logs(d)

    # unplug the first board: the table turns it offline by itself, and its member's vote now
    # comes from the fallback engine, said so in the answer
    victim = served.boards[0]
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(5)
    state_of = lambda d, url=str(victim.link): {x["url"]: x["state"] for x in fleet_rows(d)}.get(url)  # noqa: E731
    wait(d, lambda d: state_of(d) == "offline", what="the killed board shown offline")
    a = drop_and_wait(d, data)
    assert a["degraded"] is True
    by_model = {m["model"]: m for m in a["members"]}
    assert by_model[victim.model_id]["source"] == "fallback"
    assert "fallback" in by_model[victim.model_id]["sourceText"]
    assert all(m["source"] == "board" for k, m in by_model.items() if k != victim.model_id)
    assert a["text"] == api["class_name"]  # the engine is bit-exact with the board
    screenshot(d, "screenshot-fallback.png")

    # plugged back in behind the same link: ready again without a reload
    served.boards[0] = start_board(victim.model_id, victim.board_id, link=victim.link)
    wait(d, lambda d: state_of(d) == "ready", timeout=20, what="the board back")


def test_dashboard_fusion_menu_lists_the_strategies_the_api_takes_and_sends_the_chosen_one(
        served, browser, test_images):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from fleetvote.fusion import STRATEGIES

    d = browser
    d.get(served.url + "/")
    values = lambda d: [o.get_attribute("value") for o in Select(d.find_element(By.ID, "strategy")).options]  # noqa: E731
    wait(d, lambda d: len(values(d)) > 1, what="the fusion menu")
    param = next(p for p in httpx.get(served.url + "/openapi.json", timeout=10).json()["paths"]["/classify"]["post"]
                 ["parameters"] if p["name"] == "strategy")
    assert values(d) == ["", *param["schema"]["anyOf"][0]["enum"]] == ["", *STRATEGIES]

    data = png(test_images.x[5])
    for strategy in ("majority", ""):  # one asked for, then the ensemble's default (soft)
        Select(d.find_element(By.ID, "strategy")).select_by_value(strategy)
        a = drop_and_wait(d, data)
        api = httpx.post(served.url + "/classify" + (f"?strategy={strategy}" if strategy else ""),
                         files={"file": ("cifar.png", data, "image/png")}, timeout=30).json()
        assert a["label"] == str(api["label"])
        assert d.find_element(By.ID, "answer-meta").text.startswith(f"fusion {strategy or 'soft'} ·")
    assert not severe_logs(d)


def test_dashboard_mode_menu_sends_the_mode_and_shows_which_stage_answered_and_who_was_skipped(
        served, browser, test_images):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from fleetvote.adaptive import MODES

    d = browser
    d.get(served.url + "/")
    values = lambda d: [o.get_attribute("value") for o in Select(d.find_element(By.ID, "mode")).options]  # noqa: E731
    wait(d, lambda d: len(values(d)) > 1, what="the mode menu")
    assert values(d) == ["", *MODES]
    wait(d, lambda d: "mode all (cascade stage 1: " in d.find_element(By.ID, "ensemble").text, what="the mode")
    data = png(test_images.x[7])
    Select(d.find_element(By.ID, "mode")).select_by_value("cascade")
    a = drop_and_wait(d, data)
    meta = d.find_element(By.ID, "answer-meta").text
    assert "mode cascade, stage 1 answered" in meta and f"skipped: {served.ids[1]}" in meta
    assert [m["model"] for m in a["members"]] == served.ids[:1]
    Select(d.find_element(By.ID, "mode")).select_by_value("")
    a = drop_and_wait(d, data)
    assert "mode all ·" in d.find_element(By.ID, "answer-meta").text and len(a["members"]) == len(served.ids)
    assert not severe_logs(d)


def test_dashboard_asks_for_the_api_key_and_sends_it(served, browser, test_images, tmp_path):
    from selenium.webdriver.common.by import By

    d = browser
    settings = served.app.state.settings
    settings.api_key = "s3cret-key"
    try:
        d.get(served.url + "/")
        d.execute_script("sessionStorage.clear()")
        d.get(served.url + "/")
        wait(d, lambda d: d.find_element(By.ID, "key-form").is_displayed(), what="the key form")
        assert fleet_rows(d) == []
        d.find_element(By.ID, "key-input").send_keys("s3cret-key")
        d.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
        wait(d, lambda d: len(fleet_rows(d)) == len(served.ids), what="the fleet behind the key")
        assert d.execute_script("return sessionStorage.getItem('fleetvote.apiKey')") == "s3cret-key"
        assert not d.find_element(By.ID, "key-form").is_displayed()

        # the file chooser path (the drop zone's <input type=file>)
        path = tmp_path / "ship.png"
        path.write_bytes(png(test_images.x[1]))
        d.execute_script("document.getElementById('result').dataset.label = '';")
        d.find_element(By.ID, "file").send_keys(str(path))
        a = wait(d, lambda d: (x := answer(d)) and x["label"] != "" and x, what="the answer with a key")
        assert len(a["members"]) == len(served.ids)
    finally:
        settings.api_key = None
