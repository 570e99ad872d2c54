// Shared by every console page: calls to the admin API with the session's CSRF token, a small DOM
// builder (text only: nothing from the API is ever parsed as HTML), formatting and live polling.

const csrfToken = document.querySelector('meta[name="csrf-token"]')?.content;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** JSON from the service. A 401 means the session ended: back to the login page. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json", "X-CSRF-Token": csrfToken };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  if (response.status === 401) {
    window.location.assign("/console/login?notice=expired");
    throw new ApiError(401, "unauthorized", "the session has ended");
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = data?.error ?? {};
    throw new ApiError(response.status, error.code ?? "error", error.message ?? response.statusText);
  }
  return data;
}

/** An element with attributes and children (strings become text nodes). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.className = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children.flat(Infinity).filter((child) => child !== null && child !== undefined));
  return element;
}

export function byId(id) {
  return document.getElementById(id);
}

export function fill(element, ...children) {
  element.replaceChildren(...children.flat(Infinity));
}

/** A recommended item as table cells: rank, product, category, score (then any `more` cells). */
export function recommendationRow(item, ...more) {
  return h(
    "tr",
    {},
    h("td", { class: "num" }, String(item.rank)),
    h("td", {}, h("span", { class: "mono" }, item.id), " ", item.name),
    h("td", {}, item.category),
    h("td", { class: "num" }, format.number(item.relevanceScore, 3)),
    ...more,
  );
}

/** A table row spanning every column, for "nothing here" and failures. */
export function emptyRow(columns, text) {
  return h("tr", {}, h("td", { colspan: columns, class: "muted" }, text));
}

export function showFailure(error) {
  const box = byId("failure");
  if (!box) return;
  box.hidden = !error;
  box.textContent = error ? `${error.message}` : "";
}

export const format = {
  number(value, digits = 0) {
    if (value === null || value === undefined) return "–";
    return Number(value).toLocaleString("en", {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
  },
  rate(value) {
    return value === null || value === undefined ? "–" : `${format.number(value, value < 10 ? 2 : 1)}/s`;
  },
  percent(value) {
    return value === null || value === undefined ? "–" : `${format.number(value * 100, 1)} %`;
  },
  ms(seconds) {
    return seconds === null || seconds === undefined ? "–" : `${format.number(seconds * 1000, 1)} ms`;
  },
  bytes(count) {
    const units = ["B", "KB", "MB", "GB"];
    let value = count;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${format.number(value, unit ? 1 : 0)} ${units[unit]}`;
  },
  age(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const minutes = seconds / 60;
    if (minutes < 1) return `${Math.round(seconds)} s`;
    if (minutes < 90) return `${Math.round(minutes)} min`;
    const hours = minutes / 60;
    return hours < 48 ? `${format.number(hours, 1)} h` : `${format.number(hours / 24, 1)} days`;
  },
  time(iso) {
    if (!iso) return "–";
    return new Date(iso).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "medium" });
  },
};

/** Run `task` now and then every `interval()` ms while the page is visible; a failure shows and
 * polling goes on. `now()` runs it at once (after the run in progress, if any). */
export function poll(task, interval) {
  let timer = null;
  let running = null;
  const run = async () => {
    clearTimeout(timer);
    if (running) return running;
    running = (async () => {
      try {
        await task();
        showFailure(null);
      } catch (error) {
        showFailure(error);
      }
    })();
    await running;
    running = null;
    if (!document.hidden) timer = setTimeout(run, interval());
  };
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) run();
  });
  run();
  return { now: run };
}

export function stamp(text) {
  const updated = byId("updated");
  if (updated) updated.textContent = text;
}

export function nowText() {
  return new Date().toLocaleTimeString("en-GB");
}

// Session expiry in the reader's local time.
for (const element of document.querySelectorAll("time[data-local-time]")) {
  element.textContent = new Date(element.dateTime).toLocaleTimeString("en-GB", {
    hour: "2-digit",
    minute: "2-digit",
  });
}
