// fleetvote dashboard: the fleet, polled from GET boards, and a drop zone that POSTs to classify.
// Plain DOM, no build step. Every string from the service goes through textContent, never innerHTML.
// URLs are relative, so the page works behind a reverse proxy that mounts the service under a prefix.
"use strict";

(() => {
  const CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
  const KEY_STORE = "fleetvote.apiKey";  // sessionStorage: gone when the tab closes
  const POLL_MS = 1000;
  const ENSEMBLE_EVERY = 10;             // polls between two GET ensemble
  const MAX_UPLOAD = 10 * 1024 * 1024;   // the service's default upload limit, bytes (settings.upload_limit)

  const $ = (id) => document.getElementById(id);
  const state = { polls: 0, failures: 0, timer: null, inflight: false, again: false, waitingForKey: false, busy: false,
                  strategies: false };

  // ---- small DOM helpers -------------------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  const ms = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
  const pct = (v) => `${(100 * v).toFixed(1)} %`;

  function show(node, on) { node.hidden = !on; }

  function banner(text) {
    $("banner").textContent = text || "";
    show($("banner"), Boolean(text));
  }

  // ---- API access --------------------------------------------------------------------------
  function apiKey() { return sessionStorage.getItem(KEY_STORE); }

  class Unauthorized extends Error {}

  async function api(path, init = {}) {
    const headers = new Headers(init.headers || {});
    const key = apiKey();
    if (key) headers.set("X-API-Key", key);
    const resp = await fetch(path, { ...init, headers, cache: "no-store" });
    if (resp.status === 401) throw new Unauthorized(await detail(resp));
    return resp;
  }

  async function detail(resp) {
    try {
      const body = await resp.json();
      return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch {
      return `${resp.status} ${resp.statusText}`;
    }
  }

  function askForKey(message) {
    state.waitingForKey = true;
    $("fleet").tBodies[0].replaceChildren();  // nothing shown that the key would not show
    show($("key-form"), true);
    banner(apiKey() ? `The API key was refused: ${message}` : "");
    $("key-input").focus();
  }

  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORE, key);
    $("key-input").value = "";
    show($("key-form"), false);
    show($("key-forget"), true);
    banner("");
    state.waitingForKey = false;
    state.polls = 0;
    poll();
  });

  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    show($("key-forget"), false);
    state.polls = 0;
    poll();
  });

  // ---- the fleet -----------------------------------------------------------------------------
  // One poll at a time: a call while one is in flight asks for another right after it.
  async function poll() {
    clearTimeout(state.timer);
    if (state.inflight) { state.again = true; return; }
    if (document.hidden) return;  // resumed by visibilitychange
    state.inflight = true;
    try {
      await pollOnce();
    } finally {
      state.inflight = false;
    }
    if (state.again) { state.again = false; poll(); }
  }

  async function pollOnce() {
    try {
      const [boards, ready] = await Promise.all([api("boards"), fetch("readyz", { cache: "no-store" })]);
      if (!boards.ok) throw new Error(await detail(boards));
      renderFleet((await boards.json()).boards);
      renderReady(ready.status, await ready.json());
      if (state.polls % ENSEMBLE_EVERY === 0) {
        const e = await api("ensemble");
        if (e.ok) renderEnsemble(await e.json());
      }
      // the menu's own failure is not the service's: no banner, only the console
      if (!state.strategies) await loadStrategies().catch((err) => console.warn(`fusion menu: ${err.message}`));
      state.polls += 1;
      state.failures = 0;
      if (!state.waitingForKey) banner("");
    } catch (err) {
      if (err instanceof Unauthorized) {
        askForKey(err.message);
        return;  // polling resumes when a key is entered
      }
      state.failures += 1;
      banner(`The service does not answer (${err.message}); retrying.`);
      $("ready").className = "pill bad";
      $("ready").textContent = "unreachable";
    }
    const delay = Math.min(POLL_MS * 2 ** Math.min(state.failures, 3), 8000);
    state.timer = setTimeout(poll, delay);
  }

  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });

  function renderReady(status, body) {
    const pill = $("ready");
    const ok = status === 200;
    pill.className = `pill ${ok ? "good" : "bad"}`;
    pill.textContent = `${ok ? "ready" : "not ready"} · members on boards: ${body.members_on_boards ?? "?"}, quorum ${body.quorum ?? "?"}`;
    pill.title = body.detail || "GET /readyz";
  }

  function renderEnsemble(e) {
    const names = e.members.map((m) => `${m.model_id}${m.board_ids.length ? "" : " (no ready board)"}`);
    $("ensemble").textContent =
      `Ensemble: ${names.join(", ")} · fusion ${e.strategy} · quorum ${e.quorum} · fallback ${e.fallback ? "on" : "off"}` +
      ` · mode ${e.mode || "all"}${e.cascade ? ` (cascade stage 1: ${e.cascade.stage1.join(", ")})` : ""}`;
  }

  // The fusion menu lists what POST classify accepts: the enum of its strategy parameter in the
  // service's OpenAPI document (the fusion registry's names), so the page names no strategy itself.
  // Public like the page; tried again on the next poll until it loads.
  async function loadStrategies() {
    const resp = await fetch("openapi.json", { cache: "no-store" });
    if (!resp.ok) return;
    const doc = await resp.json();
    const params = doc.paths?.["/classify"]?.post?.parameters || [];
    // the mode menu (all, early, cascade) is filled the same way, from the mode parameter's enum
    for (const name of ["strategy", "mode"]) {
      const schema = params.find((p) => p.in === "query" && p.name === name)?.schema || {};
      const names = (schema.anyOf || [schema]).flatMap((s) => s.enum || []);
      const menu = $(name);
      const chosen = menu.value;
      menu.replaceChildren(menu.options[0], ...names.map((n) => el("option", { value: n }, n)));
      menu.value = names.includes(chosen) ? chosen : "";
      if (name === "strategy") state.strategies = names.length > 0;
    }
  }

  // a 96-bit board id is 24 hex digits: the first 8 tell boards apart on a screen, the title has all
  function shortId(id) {
    return el("code", { class: "id", title: id || "" }, id ? `${id.slice(0, 8)}…` : "(not greeted)");
  }

  function renderFleet(boards) {
    const tbody = $("fleet").tBodies[0];
    const rows = boards.flatMap((b) => {
      const stats = `${b.counters.requests} / ${b.counters.errors} / ${b.counters.timeouts} / ${b.counters.reconnects}`;
      const row = el("tr", { class: "board", dataset: { url: b.url, state: b.state } },
        el("td", {}, shortId(b.board_id), el("br"),
           el("small", { class: "muted url" }, b.url, b.board_name ? ` · ${b.board_name}` : "")),
        el("td", { class: "state" }, el("span", { class: `badge ${b.state}` }, b.state)),
        el("td", { class: "model" }, b.model_id || "–",
           b.model_id ? el("span", { class: `tag ${b.member ? "votes" : "idle"}` }, b.member ? "votes" : "not a member")
                      : null),
        el("td", { class: "num lat" }, `${ms(b.round_trip.p50_ms)} ms`, el("small", {}, `p99 ${ms(b.round_trip.p99_ms)}`)),
        el("td", { class: "num" }, `${ms(b.on_board.p50_ms)} ms`),
        el("td", { class: "num" }, b.queue_depth),
        el("td", { class: "num" }, stats));
      if (!b.last_error) return [row];
      // the last error on a line of its own, under its board: errors are long (paths, errno text)
      const err = el("tr", { class: `board-error${b.state === "ready" ? " old" : ""}` },
        el("td", { colspan: 7 }, `last error: ${b.last_error}`));
      return [row, err];
    });
    tbody.replaceChildren(...rows);
    show($("fleet-empty"), boards.length === 0);
    $("fleet-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  // ---- classify ------------------------------------------------------------------------------
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "dragend"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    const file = ev.dataTransfer && ev.dataTransfer.files[0];
    if (file) classify(file);
  });
  drop.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); $("file").click(); }
  });
  $("file").addEventListener("change", (ev) => {
    const file = ev.target.files[0];
    ev.target.value = "";  // choosing the same file again fires change again
    if (file) classify(file);
  });
  document.addEventListener("paste", (ev) => {
    const item = [...(ev.clipboardData ? ev.clipboardData.items : [])].find((i) => i.type.startsWith("image/"));
    if (item) classify(item.getAsFile());
  });
  // a file dropped outside the zone would make the browser navigate away from the page
  window.addEventListener("dragover", (ev) => ev.preventDefault());
  window.addEventListener("drop", (ev) => ev.preventDefault());

  // The browser's own 32x32 PNG of an image the service refused (too large, a type it does not
  // decode): resizing here differs slightly from the service's bilinear resize, so it is said.
  async function shrink(file) {
    const bitmap = await createImageBitmap(file);
    const canvas = document.createElement("canvas");
    canvas.width = 32;
    canvas.height = 32;
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(bitmap, 0, 0, 32, 32);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    return new File([blob], "resized.png", { type: "image/png" });
  }

  async function post(file) {
    const params = new URLSearchParams();
    if ($("strategy").value) params.set("strategy", $("strategy").value);
    if ($("mode").value) params.set("mode", $("mode").value);
    if (!$("fallback").checked) params.set("fallback", "false");
    const form = new FormData();
    form.append("file", file, file.name || "image");
    const query = params.toString();
    return api(`classify${query ? `?${query}` : ""}`, { method: "POST", body: form });
  }

  async function classify(file) {
    if (state.busy) return;
    state.busy = true;
    drop.classList.add("busy");
    show($("error"), false);
    const preview = $("preview");
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(file);
    show(preview, true);
    let note = "";
    try {
      let resp = file.size > MAX_UPLOAD ? null : await post(file);
      if (!resp || resp.status === 413 || resp.status === 415) {
        const reason = resp ? await detail(resp) : `${file.size.toLocaleString()} bytes`;
        resp = await post(await shrink(file));
        note = `resized to 32×32 in the browser (${reason})`;
      }
      if (!resp.ok) throw new Error(await detail(resp));
      renderAnswer(await resp.json(), note);
    } catch (err) {
      if (err instanceof Unauthorized) askForKey(err.message);
      show($("result"), false);
      $("error").textContent = `Not classified: ${err.message}`;
      show($("error"), true);
    } finally {
      state.busy = false;
      drop.classList.remove("busy");
      poll();  // the counters just moved
    }
  }

  function probBars(probs, highlight) {
    const box = el("div", { class: "spark", role: "img",
      "aria-label": probs.map((p, i) => `${CLASSES[i]} ${pct(p)}`).join(", ") });
    probs.forEach((p, i) => {
      const bar = el("span", { class: i === highlight ? "top" : "", title: `${CLASSES[i]}: ${pct(p)}` });
      bar.style.height = `${Math.max(2, Math.round(100 * p))}%`;
      box.append(bar);
    });
    return box;
  }

  function renderAnswer(a, note) {
    $("result").dataset.label = a.label;
    $("answer-label").textContent = a.class_name;
    $("answer-confidence").textContent = `${pct(a.confidence)} confidence`;
    const degraded = $("answer-degraded");
    degraded.textContent = `degraded: ${a.fallbacks} of ${a.members.length} from fallback`;
    show(degraded, a.degraded);
    // which mode answered, and for a cascade which stage; the members not waited for or never asked
    const skipped = a.skipped?.length ? ` · skipped: ${a.skipped.join(", ")}` : "";
    $("answer-meta").textContent =
      `fusion ${a.strategy} · mode ${a.mode}${a.mode === "cascade" ? `, stage ${a.stage} answered` : ""}${skipped}` +
      ` · ${ms(a.latency_ms)} ms in the service${note ? ` · ${note}` : ""}`;
    $("answer-meta").dataset.stage = a.stage;

    const top = Math.max(...a.scores);
    $("scores").replaceChildren(...a.scores.map((s, i) => {
      const fill = el("span", { class: "fill" });
      fill.style.width = `${top > 0 ? (100 * s) / top : 0}%`;
      return el("div", { class: `bar${i === a.label ? " top" : ""}` },
        el("span", { class: "name" }, CLASSES[i] ?? i), el("span", { class: "track" }, fill),
        el("span", { class: "num" }, s.toFixed(3)));
    }));

    $("members").tBodies[0].replaceChildren(...a.members.map((m) => {
      const src = m.source === "board"
        ? el("span", {}, el("span", { class: "badge board" }, "board"), " ", shortId(m.board_id))
        : el("span", {}, el("span", { class: "badge fallback" }, "fallback"), " ", el("small", { title: m.detail || "" }, m.reason || ""));
      const agrees = m.label === a.label;
      return el("tr", { dataset: { source: m.source, model: m.model_id } },
        el("td", { class: "model" }, m.model_id),
        el("td", { class: "source" }, src),
        el("td", { class: `vote ${agrees ? "agree" : "disagree"}` }, m.class_name, " ",
           el("small", { class: "muted" }, pct(m.probabilities[m.label]))),
        el("td", {}, probBars(m.probabilities, m.label)),
        el("td", { class: "num lat" }, ms(m.latency_ms),
           el("small", {}, `q ${ms(m.queue_ms)} · w ${ms(m.wire_ms)} · b ${m.on_board_ms === null ? "–" : ms(m.on_board_ms)}`)));
    }));
    show($("result"), true);
  }

  show($("key-forget"), Boolean(apiKey()));
  poll();
})();
