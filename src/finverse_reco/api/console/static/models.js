import { api, byId, emptyRow, fill, format, h, nowText, poll, showFailure, stamp } from "./console.js";

const IDLE_MS = 10000;
const WATCHING_MS = 1000;
const PRECISION = "validation_precision@10";

let state = null;
let watchedJob = null; // the refresh job this page is following
let chart = null;

function precision(version) {
  const value = version.metrics?.[PRECISION];
  return value === undefined || value === null ? null : value;
}

function guardrailText(guardrail) {
  if (!guardrail || guardrail.activated === null || guardrail.activated === undefined) return "–";
  return `${guardrail.activated ? "passed" : "held back"}: ${guardrail.reason ?? ""}`;
}

function versionRow(version) {
  const shape = version.shape ?? {};
  const isActive = version.active;
  const action = isActive
    ? h("span", { class: "badge good" }, "active")
    : h(
        "button",
        {
          type: "button",
          class: "secondary",
          "data-version": version.version,
          "aria-label": `Activate ${version.version}`,
          onclick: () => confirmActivation(version.version),
          disabled: Boolean(version.error),
        },
        "Activate",
      );
  return h(
    "tr",
    { "data-version-row": version.version, class: isActive ? "current" : "" },
    h("td", { class: "mono" }, version.version, version.version === state.serving ? h("span", { class: "muted small" }, " (serving here)") : null),
    h("td", {}, version.error ? h("span", { class: "bad" }, version.error) : format.time(version.created_at)),
    h("td", { class: "num" }, shape.users ? `${format.number(shape.users)} × ${format.number(shape.items)}` : "–"),
    h("td", { class: "num" }, format.number(version.counts?.documents)),
    h("td", { class: "num" }, precision(version) === null ? "–" : format.number(precision(version), 4)),
    h("td", { class: "small" }, guardrailText(version.guardrail)),
    h("td", { class: "num" }, format.bytes(version.bytes_on_disk)),
    h(
      "td",
      {},
      version.parameters
        ? h("details", {}, h("summary", {}, "params"), h("pre", {}, JSON.stringify(version.parameters, null, 2)))
        : "–",
    ),
    h("td", {}, action),
  );
}

function drawChart(versions) {
  const ordered = [...versions].reverse().filter((version) => precision(version) !== null);
  const labels = ordered.map((version) => version.version.slice(0, 15));
  const values = ordered.map(precision);
  if (!window.Chart) return;
  if (!chart) {
    chart = new window.Chart(byId("precision-chart"), {
      type: "line",
      data: { labels, datasets: [{ label: "validation precision@10", data: values, borderColor: "#1d4ed8", backgroundColor: "#1d4ed8", tension: 0 }] },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: { y: { beginAtZero: true, title: { display: true, text: "precision@10" } } },
        plugins: { legend: { display: false } },
      },
    });
    return;
  }
  chart.data.labels = labels;
  chart.data.datasets[0].data = values;
  chart.update("none");
}

function renderJob(job, finished) {
  const box = byId("job");
  box.hidden = false;
  const stateBadge = byId("job-state");
  stateBadge.textContent = job.state;
  stateBadge.className = `badge ${job.state === "succeeded" ? "good" : job.state === "running" ? "" : "bad"}`;
  const seconds = ((finished ? new Date(job.finished_at) : new Date()) - new Date(job.started_at)) / 1000;
  byId("job-text").textContent = finished
    ? `refresh ${job.job_id.slice(0, 8)} finished after ${format.age(seconds)}`
    : `refresh ${job.job_id.slice(0, 8)} training for ${format.age(seconds)}`;
  byId("job-progress").hidden = finished;
  byId("job-detail").textContent = job.detail || "";
  byId("start-refresh").disabled = !finished;
}

async function followJob(running) {
  if (running) {
    watchedJob = running.job_id;
    renderJob(running, false);
    return;
  }
  if (watchedJob) {
    // The job is no longer running: how did it end? (One call to the job's own endpoint.)
    const job = await api(`/api/v1/recommendations/refresh-model/${watchedJob}`);
    watchedJob = null;
    renderJob(job, true);
  }
}

async function load() {
  state = await api("/api/v1/admin/models");
  byId("active-version").textContent = state.active ?? "none";
  byId("serving-note").textContent =
    state.serving && state.serving !== state.active ? `(this replica still serves ${state.serving})` : "";
  fill(byId("versions"), state.versions.length ? state.versions.map(versionRow) : emptyRow(9, "No model versions yet."));
  drawChart(state.versions);
  await followJob(state.refresh_job);
  stamp(`Updated ${nowText()}`);
}

async function startRefresh() {
  byId("start-refresh").disabled = true;
  try {
    const job = await api("/api/v1/recommendations/refresh-model", { method: "POST" });
    watchedJob = job.job_id;
    renderJob(job, job.state !== "running");
    await poller.now();
  } catch (error) {
    showFailure(error);
    byId("start-refresh").disabled = false;
  }
}

function confirmActivation(version) {
  const dialog = byId("confirm");
  byId("confirm-version").textContent = version;
  byId("confirm-current").textContent = state.active ?? "none";
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "confirm") return;
    try {
      await api(`/api/v1/admin/models/${encodeURIComponent(version)}/activate`, { method: "POST" });
      await poller.now();
    } catch (error) {
      showFailure(error);
    }
  };
  dialog.showModal();
}

byId("start-refresh").addEventListener("click", startRefresh);
const poller = poll(load, () => (watchedJob ? WATCHING_MS : IDLE_MS));
