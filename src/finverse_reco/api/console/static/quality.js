import { api, byId, fill, format, h, showFailure } from "./console.js";

const METRICS = ["precision", "recall", "ndcg", "map"];
const COLORS = ["#1d4ed8", "#b45309", "#047857", "#7c3aed", "#be123c", "#0e7490"];

function render({ file, modified_at: modifiedAt, report }) {
  const k = report.k ?? 10;
  const columns = [...METRICS.map((name) => `${name}@${k}`), "auc", "coverage"];
  const rows = report.results.filter((row) => !row.status);
  byId("evaluation").hidden = false;
  byId("evaluation-meta").textContent =
    `${file} · written ${format.time(modifiedAt)} · dataset ${report.dataset} · protocol ${report.protocol}` +
    ` · seed ${report.seed}`;
  fill(
    byId("evaluation-head"),
    h("tr", {}, h("th", { scope: "col" }, "Model"), columns.map((name) => h("th", { scope: "col", class: "num" }, name)), h("th", { scope: "col", class: "num" }, "fit s")),
  );
  fill(
    byId("evaluation-rows"),
    report.results.map((row) =>
      h(
        "tr",
        {},
        h("td", {}, row.model),
        row.status
          ? h("td", { colspan: columns.length + 1, class: "muted" }, row.status)
          : [
              columns.map((name) => h("td", { class: "num" }, format.number(row[name], 4))),
              h("td", { class: "num" }, format.number(row.fit_seconds, 1)),
            ],
      ),
    ),
  );
  if (!window.Chart) return;
  new window.Chart(byId("evaluation-chart"), {
    type: "bar",
    data: {
      labels: columns,
      datasets: rows.map((row, index) => ({
        label: row.model,
        data: columns.map((name) => row[name]),
        backgroundColor: COLORS[index % COLORS.length],
      })),
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: { y: { beginAtZero: true, max: 1 } },
    },
  });
}

api("/api/v1/admin/evaluations/latest")
  .then(render)
  .catch((error) => {
    showFailure(error);
  });
