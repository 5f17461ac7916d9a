// Shared by every page: translated messages, JSON requests with the CSRF token, progress bars, time left.

const messages = JSON.parse(document.getElementById("i18n")?.textContent || "{}");

/** The translated message for `key` (the page puts its messages in <script type="application/json" id="i18n">). */
export function t(key, values = {}) {
  let text = messages[key] ?? key;
  for (const [name, value] of Object.entries(values)) text = text.replaceAll(`{${name}}`, String(value));
  return text;
}

export const csrfToken = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

/** A JSON request to our own API; throws an Error carrying the problem's detail when it fails. */
export async function api(method, url, body) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { "Accept": "application/json", "X-CSRFToken": csrfToken, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = response.headers.get("Content-Type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const error = new Error(data?.detail || response.statusText);
    error.status = response.status;
    throw error;
  }
  return data;
}

/** Set a <progress> element and its text label to `done` of `total`. */
export function setProgress(bar, done, total) {
  bar.max = Math.max(total, 1);
  bar.value = done;
  bar.hidden = false;
  const label = bar.nextElementSibling;
  if (label?.classList.contains("progress-label")) label.textContent = total ? `${Math.round((100 * done) / total)}%` : "";
}

/** Time left until `dueIso` as text and an urgency class: overdue, under 1 h, under 4 h, later. */
export function timeLeft(dueIso, now = Date.now()) {
  const minutes = Math.round((Date.parse(dueIso) - now) / 60000);
  const abs = Math.abs(minutes);
  const text = abs >= 60 ? t("{h} h {m} min", { h: Math.floor(abs / 60), m: abs % 60 }) : t("{m} min", { m: abs });
  if (minutes < 0) return { text: t("overdue by {time}", { time: text }), level: "overdue" };
  return { text, level: minutes < 60 ? "soon" : minutes < 240 ? "near" : "later" };
}
