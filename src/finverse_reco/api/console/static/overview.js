import { api, byId, emptyRow, fill, format, h, nowText, poll, stamp } from "./console.js";

const REFRESH_MS = 5000;

function render(state) {
  byId("health").textContent = state.ready ? "Ready" : "Not ready";
  byId("health").className = `big ${state.ready ? "good" : "bad"}`;
  fill(
    byId("checks"),
    h("li", {}, h("span", { class: "good" }, "live"), " — answering"),
    Object.entries(state.checks).map(([name, value]) =>
      h("li", {}, h("span", { class: value.startsWith("ok") ? "good" : "bad" }, name), ` — ${value}`),
    ),
  );

  const model = state.model;
  byId("model-version").textContent = model.version ?? "no model loaded";
  byId("model-age").textContent = model.version
    ? `trained ${format.age(model.age_seconds)} ago · loaded here ${format.age(model.loaded_seconds_ago)} ago`
    : "";
  byId("model-refusal").hidden = !model.refusal;
  byId("model-refusal").textContent = model.refusal ? `CURRENT refused: ${model.refusal}` : "";

  const recs = state.recommendations;
  byId("recs-rate").textContent = format.rate(recs.per_second);
  byId("degraded").textContent = `degraded: ${format.percent(recs.degraded_share)}`;

  const ingest = state.ingestion.per_second;
  byId("ingest-rate").textContent = `${format.rate(ingest.stored ?? 0)} stored`;
  byId("ingest-detail").textContent =
    `duplicates ${format.rate(ingest.duplicate ?? 0)} · rejected ${format.rate(ingest.rejected ?? 0)}`;

  const banking = state.banking_service;
  byId("breaker").textContent = banking.configured ? `breaker ${banking.breaker}` : "not used";
  byId("breaker").className = `big ${banking.configured && banking.breaker !== "closed" ? "bad" : ""}`;
  const cache = state.product_cache;
  byId("cache").textContent = cache.configured
    ? `cache hit ratio ${format.percent(cache.hit_ratio)} of ${format.number(cache.lookups)} lookups`
    : "product details from the catalog file (no cache)";

  const job = state.refresh_job;
  byId("refresh").textContent = job ? `running since ${format.time(job.started_at)}` : "idle";

  const endpoints = state.endpoints;
  fill(
    byId("endpoints"),
    endpoints.length
      ? endpoints.map((row) =>
          h(
            "tr",
            {},
            h("td", { class: "mono" }, row.route),
            h("td", { class: "num" }, format.rate(row.per_second)),
            h("td", { class: "num" }, format.number(row.requests)),
            h("td", { class: `num ${row.server_errors ? "bad" : ""}` }, format.number(row.server_errors)),
            h("td", { class: "num" }, format.ms(row.p99_seconds)),
          ),
        )
      : emptyRow(5, "No requests in the window."),
  );

  const queues = state.dead_letter_queues;
  byId("dlq-detail").textContent = queues.available ? "" : queues.detail;
  fill(
    byId("dlq-depths"),
    Object.keys(queues.depths).length
      ? Object.entries(queues.depths).map(([queue, depth]) =>
          h("tr", {}, h("td", { class: "mono" }, `${queue}.dlq`), h("td", { class: `num ${depth ? "bad" : ""}` }, format.number(depth))),
        )
      : emptyRow(2, "–"),
  );
  fill(
    byId("dlq-recent"),
    queues.recent.length
      ? queues.recent.map((letter) =>
          h("li", {}, h("span", { class: "muted" }, `${format.time(letter.at)} · ${letter.queue}: `), letter.reason),
        )
      : h("li", { class: "muted" }, "None dead-lettered by this process since it started."),
  );
  stamp(`Updated ${nowText()} · traffic over the last ${Math.round(state.window_seconds)} s on this replica`);
}

poll(async () => render(await api("/api/v1/admin/overview")), () => REFRESH_MS);
