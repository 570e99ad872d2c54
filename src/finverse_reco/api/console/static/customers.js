import { api, byId, emptyRow, fill, format, h, recommendationRow, showFailure } from "./console.js";

function productOf(event) {
  const data = event.data ?? {};
  if (data.productId) return data.productId;
  if (data.productIDs) return data.productIDs.join(", ");
  if (data.searchQuery) return `search: ${data.searchQuery}`;
  return "–";
}

function renderRecommendations(result) {
  byId("recs-meta").textContent =
    `strategy ${result.strategy} · model ${result.model_version}` +
    (result.degraded ? " · degraded (a dependency failed)" : "");
  fill(
    byId("recommendations"),
    result.recommendations.length
      ? result.recommendations.map((item) =>
          recommendationRow(item, h("td", { "data-reason": "" }, item.reason.text)),
        )
      : emptyRow(5, "Nothing to recommend."),
  );
}

function renderEvents(result) {
  fill(
    byId("events"),
    result.events.length
      ? result.events.map((event) =>
          h(
            "tr",
            {},
            h("td", {}, format.time(event.timestamp)),
            h("td", {}, event.type),
            h("td", { class: "mono" }, productOf(event)),
            h("td", { class: "mono" }, event.session_id ?? "–"),
            h("td", {}, event.queue_source ?? "–"),
          ),
        )
      : emptyRow(5, "No events stored for this customer."),
  );
}

async function lookUp(customerId) {
  const id = encodeURIComponent(customerId);
  showFailure(null);
  const [recommendations, events] = await Promise.allSettled([
    api(`/api/v1/recommendations/products/${id}?limit=10`),
    api(`/api/v1/admin/customers/${id}/events?limit=50`),
  ]);
  byId("customer").hidden = false;
  if (recommendations.status === "fulfilled") renderRecommendations(recommendations.value);
  else fill(byId("recommendations"), emptyRow(5, recommendations.reason.message));
  if (events.status === "fulfilled") renderEvents(events.value);
  else fill(byId("events"), emptyRow(5, events.reason.message));
}

const form = byId("lookup");
const input = byId("customer-id");
form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!form.reportValidity()) return;
  const customerId = input.value.trim();
  history.replaceState(null, "", `?id=${encodeURIComponent(customerId)}`);
  lookUp(customerId).catch(showFailure);
});

const given = new URLSearchParams(window.location.search).get("id");
if (given) {
  input.value = given;
  lookUp(given).catch(showFailure);
}
