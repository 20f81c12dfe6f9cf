// anime-production ops dashboard: polls /v1/dashboard/summary, follows /v1/ws live.
"use strict";

const POLL_MS = 2000;
const KEY_STORAGE = "anime.apiKey";
const jobs = new Map(); // job_id -> {row data, element}
let socket = null;
let pollTimer = null;
let reconnectTimer = null;

const $ = (selector) => document.querySelector(selector);

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (apiKey()) h["X-API-Key"] = apiKey();
  return h;
}

function withKey(url) {
  if (!apiKey()) return url;
  return url + (url.includes("?") ? "&" : "?") + "api_key=" + encodeURIComponent(apiKey());
}

function banner(text) {
  const el = $("#banner");
  el.hidden = !text;
  el.textContent = text || "";
}

function ageText(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  seconds = Math.max(0, seconds);
  if (seconds < 60) return Math.round(seconds) + "s";
  if (seconds < 3600) return Math.round(seconds / 60) + "m";
  if (seconds < 86400) return (seconds / 3600).toFixed(1) + "h";
  return (seconds / 86400).toFixed(1) + "d";
}

function sinceText(iso) {
  return ageText((Date.now() - Date.parse(iso)) / 1000);
}

function num(value, digits) {
  if (value === null || value === undefined) return "—";
  return digits === undefined ? String(value) : Number(value).toFixed(digits);
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function badge(state) {
  const span = document.createElement("span");
  span.className = "state " + state;
  span.textContent = state;
  return span;
}

// ------------------------------------------------------------------ summary

async function refresh() {
  let response;
  try {
    response = await fetch("/v1/dashboard/summary", { headers: headers() });
  } catch (error) {
    banner("The notifier does not answer: " + error);
    return;
  }
  if (response.status === 401 || response.status === 403) {
    banner(response.status === 401
      ? "Enter an API key (read scope; admin to replay dead letters)."
      : "This key lacks the read scope.");
    return;
  }
  if (!response.ok) {
    banner("Summary failed: HTTP " + response.status);
    return;
  }
  banner("");
  const summary = await response.json();
  renderThroughput(summary);
  renderQueues(summary.queues);
  renderBackends(summary.backends, summary.renderer);
  renderJobs(summary.jobs);
  renderDeadLetters(summary.dead_letters);
  renderFailed(summary.failed);
  $("#updated").textContent = "updated " + new Date(summary.taken_at).toLocaleTimeString();
  if (!socket) connect();
}

function renderThroughput(summary) {
  const t = summary.throughput;
  $("[data-testid=active-jobs]").textContent = t.active.now;
  $("[data-testid=completed-1m]").textContent = t.completed["1m"];
  $("[data-testid=completed-5m]").textContent = t.completed["5m"];
  $("[data-testid=completed-1h]").textContent = t.completed["1h"];
  $("[data-testid=failed-1h]").textContent = t.failed["1h"];
  const dlqs = (summary.queues.queues || []).filter((q) => q.role === "dlq");
  $("[data-testid=dead-letters]").textContent = dlqs.reduce((n, q) => n + (q.ready || 0), 0);
}

function renderQueues(report) {
  $("#queue-source").textContent = report.source === "management"
    ? "· from the management API"
    : report.source === "amqp"
      ? "· from passive declares (ready and consumers only)"
      : "· unavailable: " + (report.note || "");
  const body = $("#queues tbody");
  body.replaceChildren();
  for (const q of report.queues || []) {
    const tr = document.createElement("tr");
    tr.className = q.role + (q.exists ? "" : " missing");
    tr.dataset.queue = q.name;
    tr.append(cell(q.name, "mono"), cell(q.role));
    if (!q.exists) {
      tr.append(cell("missing", "num ready"), cell(""), cell(""), cell(""), cell(""), cell(""));
    } else {
      tr.append(
        cell(num(q.ready), "num ready" + (q.ready ? " nonzero" : "")),
        cell(num(q.unacked), "num"),
        cell(num(q.consumers), "num consumers" + (q.consumers === 0 ? " zero" : "")),
        cell(ageText(q.oldest_age_seconds), "num"),
        cell(num(q.publish_rate, 1), "num"),
        cell(num(q.deliver_rate, 1), "num"),
      );
    }
    body.append(tr);
  }
}

function renderBackends(backends, renderer) {
  const problems = Object.entries(renderer.problems || {}).map(([k, v]) => k + ": " + v);
  $("#renderer-status").textContent = renderer.ready === null
    ? "· renderer not reachable"
    : renderer.ready ? "· renderer ready" : "· renderer not ready (" + problems.join("; ") + ")";
  const body = $("#backends tbody");
  body.replaceChildren();
  for (const b of backends) {
    const tr = document.createElement("tr");
    tr.dataset.backend = b.url;
    const status = document.createElement("td");
    status.className = "status";
    status.append(badge(b.status));
    tr.append(
      cell(b.url, "mono"), status, cell(num(b.running), "num"), cell(num(b.pending), "num"),
      cell(num(b.renders), "num"),
      cell(b.mean_render_seconds === null ? "—" : b.mean_render_seconds.toFixed(2) + "s", "num"),
    );
    body.append(tr);
  }
}

function jobElement(job) {
  const el = document.createElement("div");
  el.className = "job";
  el.dataset.jobId = job.job_id;
  el.setAttribute("data-testid", "job");
  el.innerHTML =
    '<img class="thumb" alt="">' +
    '<div class="meta"><div><span class="id"></span> <span class="state-holder"></span></div>' +
    '<div class="shot"></div><div class="bar"><div></div></div>' +
    '<div class="muted detail"></div><ul class="problems" data-testid="problems"></ul></div>';
  return el;
}

// A failure's problems, one item each: what failed where, what was allowed, what to do.
function problemItems(problems) {
  return (problems || []).map((p) => {
    const li = document.createElement("li");
    li.setAttribute("data-testid", "problem");
    const message = document.createElement("div");
    message.textContent = p.message || "";
    li.append(message);
    if (Array.isArray(p.allowed) && !String(p.message || "").includes("allowed values")) {
      const allowed = document.createElement("div");
      allowed.className = "muted";
      const total = typeof p.allowed_total === "number" ? p.allowed_total : p.allowed.length;
      allowed.textContent = "allowed: " + (p.allowed.length
        ? p.allowed.map((a) => JSON.stringify(a)).join(", ") +
          (total > p.allowed.length ? " … and " + (total - p.allowed.length) + " more" : "")
        : "none");
      li.append(allowed);
    }
    if (p.hint && !String(p.message || "").includes(p.hint)) {
      const hint = document.createElement("div");
      hint.className = "hint";
      hint.textContent = "hint: " + p.hint;
      li.append(hint);
    }
    return li;
  });
}

function paintJob(entry) {
  const { data, el } = entry;
  el.className = "job " + data.state;
  el.dataset.state = data.state;
  el.dataset.progress = String(Math.round(data.progress));
  el.querySelector(".id").textContent = data.job_id.slice(0, 8);
  el.querySelector(".state-holder").replaceChildren(badge(data.state));
  el.querySelector(".shot").textContent = data.project + (data.shot ? " / " + data.shot : "");
  el.querySelector(".bar > div").style.width = Math.round(data.progress) + "%";
  const detail = data.state === "failed" || data.state === "rejected"
    ? data.reason || ""
    : Math.round(data.progress) + "%" + (data.attempt > 1 ? " · attempt " + data.attempt : "");
  el.querySelector(".detail").textContent = detail;
  el.querySelector(".problems").replaceChildren(
    ...(data.state === "failed" ? problemItems(data.problems) : []),
  );
  const img = el.querySelector(".thumb");
  if (data.assets && data.assets.length) loadThumbnail(img, data.assets[0]);
}

// Thumbnails are fetched with the key in a header (only the WebSocket takes ?api_key=)
// and shown through an object URL.
async function loadThumbnail(img, assetId) {
  if (img.dataset.asset === assetId) return;
  img.dataset.asset = assetId;
  try {
    const response = await fetch("/v1/dashboard/thumbnails/" + assetId, { headers: headers() });
    if (!response.ok) { delete img.dataset.asset; return; }
    const url = URL.createObjectURL(await response.blob());
    const previous = img.getAttribute("src");
    img.setAttribute("src", url);
    if (previous && previous.startsWith("blob:")) URL.revokeObjectURL(previous);
  } catch (err) {
    delete img.dataset.asset;
  }
}

function renderJobs(list) {
  const container = $("#jobs");
  const order = [];
  for (const job of list) {
    let entry = jobs.get(job.job_id);
    if (!entry) {
      entry = { data: job, el: jobElement(job) };
      jobs.set(job.job_id, entry);
    } else {
      // Live progress may be ahead of the database row; never move a bar backwards.
      const live = entry.data;
      const sameState = live.state === job.state;
      entry.data = Object.assign({}, job);
      if (sameState && live.progress > job.progress) entry.data.progress = live.progress;
    }
    paintJob(entry);
    order.push(entry.el);
  }
  container.replaceChildren(...order);
}

function renderDeadLetters(dead) {
  $("#dlq-name").textContent = "· " + dead.queue;
  const body = $("#dead-letters tbody");
  body.replaceChildren();
  for (const letter of dead.items || []) {
    const tr = document.createElement("tr");
    tr.dataset.letterId = letter.id;
    tr.setAttribute("data-testid", "dead-letter");
    const action = document.createElement("td");
    const button = document.createElement("button");
    button.textContent = "Replay";
    button.setAttribute("data-testid", "replay");
    button.addEventListener("click", () => replay(dead.queue, letter, button));
    action.append(button);
    tr.append(
      cell(letter.job_id ? letter.job_id.slice(0, 8) : "—", "mono"),
      cell(letter.reason, "reason"),
      cell(num(letter.attempt), "num"),
      cell(ageText(letter.age_seconds), "num"),
      action,
    );
    body.append(tr);
  }
}

function renderFailed(list) {
  const body = $("#failed tbody");
  body.replaceChildren();
  for (const job of list) {
    const tr = document.createElement("tr");
    tr.dataset.jobId = job.job_id;
    tr.setAttribute("data-testid", "failed-job");
    const reason = cell(job.reason || "", "reason");
    const problems = document.createElement("ul");
    problems.className = "problems";
    problems.append(...problemItems(job.problems));
    reason.append(problems);
    tr.append(
      cell(job.job_id.slice(0, 8), "mono"),
      cell(job.project + (job.shot ? " / " + job.shot : "")),
      reason,
      cell(num(job.attempt), "num"),
      cell(sinceText(job.updated_at) + " ago", "num"),
    );
    body.append(tr);
  }
}

async function replay(queue, letter, button) {
  button.disabled = true;
  const result = $("#replay-result");
  try {
    const response = await fetch("/v1/admin/dlq/replay", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ queue: queue, ids: [letter.id] }),
    });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401 || response.status === 403) {
      result.textContent = "Replay needs an admin key.";
    } else if (!response.ok) {
      result.textContent = "Replay failed: " + JSON.stringify(body.errors || body.failed || body);
    } else {
      result.textContent = "Replayed " + body.replayed.length + " to " + body.target + ".";
    }
  } catch (error) {
    result.textContent = "Replay failed: " + error;
  }
  await refresh();
}

// ------------------------------------------------------------------ live events

function connect() {
  clearTimeout(reconnectTimer);
  if (socket) return;
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const status = $("#ws-status");
  try {
    socket = new WebSocket(withKey(scheme + location.host + "/v1/ws"));
  } catch (error) {
    socket = null;
    return;
  }
  socket.addEventListener("open", () => {
    socket.send(JSON.stringify({ action: "subscribe", events: "#" }));
    status.textContent = "live: on";
    status.className = "pill on";
  });
  socket.addEventListener("message", (message) => {
    let frame;
    try { frame = JSON.parse(message.data); } catch (error) { return; }
    if (frame.type === "event") onEvent(frame);
  });
  socket.addEventListener("close", () => {
    socket = null;
    status.textContent = "live: off";
    status.className = "pill off";
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, 3000);
  });
}

function onEvent(frame) {
  let entry = jobs.get(frame.job_id);
  if (!entry) {
    const job = {
      job_id: frame.job_id, project: frame.project || "", shot: "", state: frame.state,
      progress: 0, attempt: 0, reason: null, assets: [], problems: [],
    };
    entry = { data: job, el: jobElement(job) };
    jobs.set(frame.job_id, entry);
    $("#jobs").prepend(entry.el);
  }
  const data = entry.data;
  const event = frame.event || {};
  data.state = frame.state || data.state;
  if (frame.event_type === "job.started") data.progress = 0;
  if (frame.event_type === "job.progress" && typeof event.percent === "number") {
    data.progress = Math.max(data.progress, event.percent);
  }
  if (event.attempt) data.attempt = event.attempt;
  if (frame.event_type === "job.rendered" || frame.event_type === "job.archived") data.progress = 100;
  if (frame.event_type === "job.failed") {
    data.reason = event.reason;
    data.problems = event.problems || [];
  }
  paintJob(entry);
  if (["job.archived", "job.failed", "job.rejected", "job.cancelled"].includes(frame.event_type)) {
    refresh();
  }
}

// ------------------------------------------------------------------ start

function start() {
  $("#api-key").value = apiKey();
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(KEY_STORAGE, $("#api-key").value.trim());
    if (socket) socket.close();
    refresh();
  });
  refresh();
  pollTimer = setInterval(refresh, POLL_MS);
}

start();
