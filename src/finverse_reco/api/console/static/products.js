import { api, byId, emptyRow, fill, format, h, recommendationRow, showFailure } from "./console.js";

async function showSimilar(productId) {
  const section = byId("similar");
  section.hidden = false;
  byId("similar-to").textContent = productId;
  try {
    const result = await api(`/api/v1/recommendations/similar-products/${encodeURIComponent(productId)}?limit=10`);
    byId("similar-meta").textContent = `model ${result.model_version}${result.degraded ? " · degraded" : ""}`;
    fill(
      byId("similar-rows"),
      result.recommendations.length
        ? result.recommendations.map((item) => recommendationRow(item))
        : emptyRow(4, "No similar products."),
    );
  } catch (error) {
    byId("similar-meta").textContent = "";
    fill(byId("similar-rows"), emptyRow(4, error.message));
  }
  section.scrollIntoView({ block: "start" });
  byId("h-similar").focus({ preventScroll: true });
}

function productRow(product) {
  return h(
    "tr",
    {},
    h("td", {}, h("span", { class: "mono" }, product.id), " ", product.name),
    h("td", {}, product.category),
    h("td", {}, product.institution),
    h("td", { class: "num" }, format.number(product.interest_rate, 2)),
    h("td", { class: "num" }, format.number(product.annual_fee, 0)),
    h("td", { class: "num" }, product.risk_level ?? "–"),
    h("td", { class: "num" }, product.min_age ?? "–"),
    h("td", { class: "num" }, format.number(product.min_income, 0)),
    h("td", {}, product.in_model ? "yes" : h("span", { class: "muted" }, "no")),
    h(
      "td",
      {},
      h("button", { type: "button", class: "secondary", "aria-label": `Similar to ${product.id}`, onclick: () => showSimilar(product.id) }, "Similar"),
    ),
  );
}

async function search(text) {
  const result = await api(`/api/v1/admin/products?q=${encodeURIComponent(text)}&limit=50`);
  byId("total").textContent =
    result.total > result.products.length ? `(${result.products.length} of ${result.total})` : `(${result.total})`;
  fill(byId("products"), result.products.length ? result.products.map(productRow) : emptyRow(10, "No product matches."));
}

byId("h-similar").tabIndex = -1;
byId("search").addEventListener("submit", (event) => {
  event.preventDefault();
  showFailure(null);
  search(byId("query").value).catch(showFailure);
});
search("").catch(showFailure);
