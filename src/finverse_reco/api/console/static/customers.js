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

// What each answer on personalisation means for the lists served (docs/ACCOUNTABILITY.md).
const CONSENT = {
  true: "Personalisation: consented.",
  false: "Personalisation: objected. Served global popularity within the policy; not trained on.",
  null: "Personalisation: never asked. Personalised until the customer objects.",
};
const PROFILE_FIELDS = [
  ["birth_year", "Birth year"],
  ["annual_income", "Annual income"],
  ["income_range", "Income range"],
  ["residency", "Residency"],
  ["region", "Region"],
  ["risk_profile", "Risk profile"],
  ["kyc_status", "KYC"],
  ["holdings", "Holdings"],
  ["updated_at", "Updated"],
];

function renderProfile(profile) {
  byId("consent").textContent = CONSENT[profile.personalisation_consent];
  fill(
    byId("profile"),
    PROFILE_FIELDS.map(([key, label]) => {
      let value = profile[key];
      if (key === "updated_at") value = format.time(value);
      else if (Array.isArray(value)) value = value.length ? value.join(", ") : "none";
      return h("tr", {}, h("th", { scope: "row" }, label), h("td", {}, value ?? "unknown"));
    }),
  );
}

function renderNoProfile(error) {
  const missing = error.status === 404;
  byId("consent").textContent = missing ? `${CONSENT.null} No profile is stored.` : "";
  fill(byId("profile"), emptyRow(2, missing ? "No profile stored for this customer." : error.message));
}

async function lookUp(customerId) {
  const id = encodeURIComponent(customerId);
  showFailure(null);
  const [recommendations, events, profile] = await Promise.allSettled([
    api(`/api/v1/recommendations/products/${id}?limit=10`),
    api(`/api/v1/admin/customers/${id}/events?limit=50`),
    api(`/api/v1/customers/${id}/profile`),
  ]);
  byId("customer").hidden = false;
  if (recommendations.status === "fulfilled") renderRecommendations(recommendations.value);
  else fill(byId("recommendations"), emptyRow(5, recommendations.reason.message));
  if (events.status === "fulfilled") renderEvents(events.value);
  else fill(byId("events"), emptyRow(5, events.reason.message));
  if (profile.status === "fulfilled") renderProfile(profile.value);
  else renderNoProfile(profile.reason);
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
