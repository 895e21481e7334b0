// DataTrace dashboard: REST for snapshots, one EventSource for live changes.
// The units snapshot says up to which event id it is current; the stream starts there,
// so nothing is missed between the two. EventSource reconnects by itself and sends
// Last-Event-ID; if the server refuses the stream, we reopen it after a pause.
// Rows/s and ETAs are the server's (its `rollup` events and the REST answers): this
// page only shows them, it computes none.
"use strict";

const state = { taskId: null, task: null, rollup: null, units: new Map(), source: null,
                reopenTimer: null, refreshedAt: 0 };
const $ = (id) => document.getElementById(id);

function fmtInt(n) { return Number(n || 0).toLocaleString("en-US"); }
function fmtRate(r) { return r > 0 ? `${fmtInt(Math.round(r))}/s` : "–"; }
function fmtDuration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  if (s < 60) return `${s.toFixed(1)}s`;
  s = Math.round(s);
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}
function fmtEta(s, status) {
  if (status === "completed") return "done";
  if (s === null || s === undefined || !isFinite(s)) return "–";
  s = Math.round(s);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

async function api(path, options) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : `HTTP ${response.status}`;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return body;
}

function notice(text, bad) {
  const el = $("notice");
  el.textContent = text;
  el.className = bad ? "notice bad" : "notice";
  el.hidden = !text;
}

// -- task list ------------------------------------------------------------------------

async function loadTasks() {
  let tasks;
  try { tasks = await api("/api/tasks"); } catch (e) { return; }
  const list = $("tasks");
  list.replaceChildren();
  if (!tasks.length) {
    const li = document.createElement("li");
    li.className = "muted"; li.textContent = "no sync task yet";
    list.append(li);
  }
  for (const task of tasks) {
    const li = document.createElement("li");
    li.dataset.taskId = task.id;
    if (task.id === state.taskId) li.classList.add("selected");
    const name = document.createElement("span");
    name.className = "name"; name.textContent = task.name;
    const badge = document.createElement("span");
    badge.className = `badge ${task.status}`; badge.textContent = task.status;
    const when = document.createElement("span");
    when.className = "muted small"; when.textContent = " " + task.created_at.replace("T", " ").slice(0, 19);
    li.append(name, badge, when);
    li.addEventListener("click", () => select(task.id));
    list.append(li);
  }
  if (!state.taskId && tasks.length) {
    const wanted = decodeURIComponent(location.hash.slice(1));
    select(tasks.some((t) => t.id === wanted) ? wanted : tasks[0].id);
  }
}

// -- one task ---------------------------------------------------------------------------

async function select(taskId) {
  state.taskId = taskId;
  history.replaceState(null, "", `#${encodeURIComponent(taskId)}`);
  for (const li of $("tasks").children) li.classList.toggle("selected", li.dataset.taskId === taskId);
  closeStream();
  state.units.clear(); state.rollup = null;
  $("units").replaceChildren();
  notice("");
  await refreshTask();
  try {
    const snapshot = await api(`/api/tasks/${encodeURIComponent(taskId)}/units`);
    if (state.taskId !== taskId) return;
    for (const unit of snapshot.units) { state.units.set(unit.id, unit); renderUnit(unit); }
    renderSummary();
    openStream(taskId, snapshot.last_event_id);
  } catch (e) {
    notice(e.message, true);
    scheduleReopen();
  }
}

async function refreshTask() {
  const taskId = state.taskId;
  try {
    const task = await api(`/api/tasks/${encodeURIComponent(taskId)}`);
    if (state.taskId !== taskId) return;
    state.task = task;
    $("placeholder").hidden = true;
    $("task").hidden = false;
    $("task-name").textContent = task.name;
    $("task-id").textContent = task.id;
    $("task-route").textContent = `${task.source || "?"} → ${task.target || "?"}`;
    $("task-message").textContent = task.message + (task.pause_requested && task.status === "running" ? " · pausing…" : "");
    renderSummary();
    loadRuns();
  } catch (e) {
    notice(e.message, true);
  }
}

// The task's figures: the stream's latest rollup, or the task detail's until one came.
function renderSummary() {
  const task = state.task;
  if (!task) return;
  const rollup = state.rollup || task.rollup;
  const total = rollup.total_records;
  const pct = total > 0 ? rollup.percentage : (task.status === "completed" ? 100 : 0);
  const status = $("task-status");
  status.textContent = task.status; status.className = `badge ${task.status}`;
  $("task-bar").style.width = `${pct}%`;
  $("task-bar").parentElement.className = `bar big ${task.status}`;
  $("task-bar-label").textContent = `${fmtInt(rollup.processed_records)} / ${fmtInt(total)} · ${Number(pct).toFixed(1)} %`;
  $("task-rate").textContent = fmtRate(rollup.rows_per_second);
  $("task-eta").textContent = `ETA ${fmtEta(rollup.eta_seconds, task.status)}`;
  const units = [...state.units.values()];
  const running = task.status === "running";
  const failed = units.some((u) => u.status === "failed");
  const unfinished = units.some((u) => u.status !== "completed");
  $("btn-pause").disabled = !running;
  $("btn-resume").disabled = running || !unfinished;
  $("btn-retry").disabled = running || !failed;
}

function renderUnit(unit) {
  let row = document.querySelector(`#units tr[data-unit-id="${CSS.escape(unit.id)}"]`);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.unitId = unit.id;
    row.innerHTML = '<td class="name"></td><td><span class="badge"></span></td>' +
      '<td><div class="bar"><div></div><span></span></div></td>' +
      '<td class="num rate"></td><td class="chart"></td><td class="num elapsed"></td>' +
      '<td class="num eta"></td><td class="verified"></td><td class="error"></td>';
    $("units").append(row);
  }
  const pct = unit.status === "completed" && unit.total_records === 0 ? 100 : unit.percentage;
  row.dataset.status = unit.status;
  row.dataset.percentage = String(pct);
  row.querySelector(".name").textContent = unit.name;
  const badge = row.querySelector(".badge");
  badge.textContent = unit.status; badge.className = `badge ${unit.status}`;
  const bar = row.querySelector(".bar");
  bar.className = `bar ${unit.status}`;
  bar.firstElementChild.style.width = `${pct}%`;
  bar.lastElementChild.textContent = `${fmtInt(unit.processed_records)} / ${fmtInt(unit.total_records)} · ${Number(pct).toFixed(1)} %`;
  const rate = row.querySelector(".rate");
  const running = unit.status === "running";
  rate.textContent = running ? fmtRate(unit.rows_per_second) : fmtRate(unit.average_rows_per_second);
  rate.title = running ? "over the last seconds" : "average of the last run";
  renderChart(row.querySelector(".chart"), unit.rate_history || []);
  row.querySelector(".elapsed").textContent = fmtDuration(unit.elapsed_seconds);
  row.querySelector(".eta").textContent = fmtEta(unit.eta_seconds, unit.status);
  renderVerification(row.querySelector(".verified"), unit.verification);
  renderError(row.querySelector(".error"), unit.error_message || "");
}

// The server's (seconds, rows/s) points of the unit's last run, as a line.
function renderChart(cell, points) {
  if (!points.length) { cell.replaceChildren(); return; }
  const maxT = Math.max(...points.map((p) => p[0])) || 1;
  const maxR = Math.max(...points.map((p) => p[1])) || 1;
  const coords = [[0, points[0][1]], ...points].map(
    ([t, r]) => `${(t / maxT * 96).toFixed(1)},${(21 - r / maxR * 20).toFixed(1)}`);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark"); svg.setAttribute("viewBox", "0 0 96 22");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `rows/s over ${fmtDuration(maxT)}, peak ${fmtRate(maxR)}`);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", coords.join(" "));
  svg.append(line);
  cell.replaceChildren(svg);
}

function renderVerification(cell, result) {
  cell.className = "verified";
  if (!result) { cell.textContent = "–"; cell.title = ""; return; }
  cell.classList.add(result.ok ? "ok" : "bad");
  cell.textContent = result.ok ? `✓ ${fmtInt(result.target_rows)} rows` : "✗ differs";
  cell.title = [result.method, result.scope, result.verified_at].filter(Boolean).join(" · ");
}

// A long error shows its first line; the whole text is one click away.
function renderError(cell, text) {
  const short = text.length <= 80 && !text.includes("\n");
  if (short) { cell.textContent = text; return; }
  const open = cell.querySelector("details")?.open;
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = text.split("\n")[0].slice(0, 77) + "…";
  const full = document.createElement("pre");
  full.textContent = text;
  details.append(summary, full);
  details.open = Boolean(open);
  cell.replaceChildren(details);
}

function onUnitEvent(message) {
  const event = JSON.parse(message.data);
  if (event.task_id !== state.taskId) return;
  const unit = state.units.get(event.unit_id);
  if (!unit) { loadUnitsLater(); return; }
  unit.status = event.status;
  unit.processed_records = event.processed_records;
  unit.total_records = event.total_records;
  unit.percentage = event.percentage;
  if (event.status === "failed") unit.error_message = event.message;
  else if (event.status === "running" || event.status === "completed") unit.error_message = "";
  renderUnit(unit);  // its rows/s and ETA come with the rollup sent after this batch
  renderSummary();
  // A unit that ended has new figures (elapsed, average, chart, verification): fetch them.
  if (event.kind === "status" && event.status !== "running") refreshUnitsLater();
}

let refreshTimer = null;
function refreshUnitsLater() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(refreshUnits, 300);
}

async function refreshUnits() {
  refreshTimer = null;
  state.refreshedAt = Date.now();
  const taskId = state.taskId;
  if (!taskId) return;
  let snapshot;
  try { snapshot = await api(`/api/tasks/${encodeURIComponent(taskId)}/units`); } catch (e) { return; }
  if (state.taskId !== taskId) return;
  for (const fresh of snapshot.units) {
    const unit = state.units.get(fresh.id);
    if (!unit) continue;
    for (const key of ["elapsed_seconds", "average_rows_per_second", "rate_history", "verification"])
      unit[key] = fresh[key];
    renderUnit(unit);
  }
  loadRuns();
}

// The runs of the selected task's job (sync tasks under the same name), newest first.
async function loadRuns() {
  const task = state.task;
  if (!task) return;
  let runs;
  try { runs = await api(`/api/jobs/${encodeURIComponent(task.name)}/runs?limit=10`); } catch (e) { return; }
  if (!state.task || state.task.name !== task.name) return;
  const body = $("runs-body");
  body.replaceChildren();
  for (const run of runs) {
    const row = document.createElement("tr");
    row.dataset.taskId = run.task_id;
    if (run.task_id === state.taskId) row.classList.add("selected");
    const cells = [
      run.created_at.replace("T", " ").slice(0, 19), run.mode, null,
      fmtInt(run.rows_read), fmtInt(run.rows_written), fmtInt(run.rows_deleted),
      `${run.verified}/${run.units}`, run.seconds === null ? "–" : run.seconds.toFixed(1),
    ];
    cells.forEach((text, i) => {
      const cell = document.createElement("td");
      if (i >= 3) cell.className = "num";
      if (text === null) {
        const badge = document.createElement("span");
        badge.className = `badge ${run.status}`; badge.textContent = run.status;
        cell.append(badge);
      } else cell.textContent = text;
      row.append(cell);
    });
    const prefect = document.createElement("td");
    if (run.flow_run_url) {
      const link = document.createElement("a");
      link.href = run.flow_run_url; link.target = "_blank"; link.rel = "noopener";
      link.textContent = "flow run ↗";
      link.addEventListener("click", (e) => e.stopPropagation());
      prefect.append(link);
    }
    row.append(prefect);
    row.addEventListener("click", () => select(run.task_id));
    body.append(row);
  }
  $("runs").hidden = runs.length === 0;
}

// The server's figures as of its event watermark: the task's, and each running unit's.
function onRollup(message) {
  const figures = JSON.parse(message.data);
  if (figures.task_id !== state.taskId) return;
  state.rollup = figures.rollup;
  const rates = new Map(figures.units.map((rate) => [rate.id, rate]));
  for (const unit of state.units.values()) {
    const rate = rates.get(unit.id);  // a unit not listed has no speed and no ETA now
    unit.rows_per_second = rate ? rate.rows_per_second : 0;
    unit.eta_seconds = rate ? rate.eta_seconds : null;
    renderUnit(unit);
  }
  renderSummary();
  // Running units' elapsed time and rows/s lines grow: fetch them now and then.
  if (figures.units.length && Date.now() - state.refreshedAt > 5000) refreshUnitsLater();
}

function onTaskEvent(message) {
  const event = JSON.parse(message.data);
  if (event.task_id !== state.taskId) return;
  if (state.task) { state.task.status = event.status; state.task.message = event.message; }
  renderSummary();
  refreshTask();
  loadTasks();
}

let unitsTimer = null;
function loadUnitsLater() {
  if (unitsTimer) return;
  unitsTimer = setTimeout(() => { unitsTimer = null; if (state.taskId) select(state.taskId); }, 500);
}

// -- stream -----------------------------------------------------------------------------

function setStreamState(text, cls) {
  const el = $("stream-state");
  el.textContent = text; el.className = `stream ${cls || ""}`;
}

function openStream(taskId, lastEventId) {
  closeStream();
  const url = `/api/tasks/${encodeURIComponent(taskId)}/events?last_event_id=${lastEventId}&rollup=true`;
  const source = new EventSource(url, { withCredentials: true });
  state.source = source;
  source.addEventListener("open", () => setStreamState("live", "live"));
  source.addEventListener("heartbeat", () => setStreamState("live", "live"));
  source.addEventListener("unit", onUnitEvent);
  source.addEventListener("task", onTaskEvent);
  source.addEventListener("rollup", onRollup);
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      setStreamState("disconnected", "down");
      scheduleReopen();  // the server refused: reload the snapshot, then stream again
    } else {
      setStreamState("reconnecting…", "down");  // the browser retries with Last-Event-ID
    }
  });
}

function closeStream() {
  if (state.source) { state.source.close(); state.source = null; }
  if (state.reopenTimer) { clearTimeout(state.reopenTimer); state.reopenTimer = null; }
}

function scheduleReopen() {
  if (state.reopenTimer) return;
  state.reopenTimer = setTimeout(() => { state.reopenTimer = null; if (state.taskId) select(state.taskId); }, 3000);
}

// -- actions ----------------------------------------------------------------------------

async function act(action) {
  const taskId = state.taskId;
  if (!taskId) return;
  try {
    const answer = await api(`/api/tasks/${encodeURIComponent(taskId)}/${action}`, { method: "POST" });
    notice(answer.detail, false);
    if (action === "pause" && state.task) state.task.pause_requested = true;
  } catch (e) {
    notice(e.message, true);
  }
  refreshTask();
}

document.addEventListener("DOMContentLoaded", () => {
  $("btn-pause").addEventListener("click", () => act("pause"));
  $("btn-resume").addEventListener("click", () => act("resume"));
  $("btn-retry").addEventListener("click", () => act("retry-failed"));
  loadTasks();
  setInterval(loadTasks, 5000);
});
