// The worklist: refreshed from GET /api/v1/worklist every 20 s and when the window comes back into view, countdowns
// updated every 30 s, "Claim and open" claims through the API and opens the study viewer.
import { api, csrfToken, t, timeLeft } from "./common.js";

const config = JSON.parse(document.getElementById("worklist-config").textContent);
const rowsBody = document.getElementById("rows");
const banner = document.getElementById("banner");
const REFRESH_MS = 20_000;
const TICK_MS = 30_000;
const RUNNING = ["open", "claimed"];

let refreshing = null;
let signedOut = false;

// Refreshing stops once nobody has touched the page for as long as a session lasts: the list's own requests must
// not keep an unattended computer signed in. The next touch refreshes (or finds the session ended).
let lastActivity = Date.now();
const idle = () => Date.now() - lastActivity > config.idleMinutes * 60_000;
for (const name of ["pointerdown", "pointermove", "keydown", "wheel", "touchstart"]) {
  window.addEventListener(name, () => { lastActivity = Date.now(); }, { passive: true });
}

// --- labels (literal t() calls, so the translation test can see every key) -----------------------------------

function priorityLabel(priority) {
  return { STAT: t("STAT"), URGENT: t("Urgent"), ROUTINE: t("Routine") }[priority] ?? priority;
}

function stateLabel(state) {
  return { open: t("Waiting for a reader"), claimed: t("Being read"), signed: t("Reported"), cancelled: t("Cancelled") }[state] ?? state;
}

function noticeLabel(kind) {
  return { reminder: t("Reminder: the deadline is near"), escalation: t("Escalated: offered to every reader"),
    breach: t("Deadline passed"), reassigned: t("Given to you by the supervisor"),
    peer_review: t("A report to peer review"),
    peer_review_discrepancy: t("Peer review found a significant discrepancy") }[kind] ?? t("Notice");
}

function errorText(status) {
  return {
    401: t("You have been signed out. Sign in again, then try once more."),
    403: t("This study is not yours to claim: it is offered to another reader, or you do not read this kind."),
    404: t("This study is no longer on the worklist."),
    409: t("Someone else has just claimed this study."),
  }[status] ?? t("Something went wrong. Please try again.");
}

// --- small DOM helpers ---------------------------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("data-")) node.dataset[name.slice(5).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === "") continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function showBanner(text, signIn = false) {
  banner.replaceChildren(text);
  if (signIn) {
    const back = encodeURIComponent(location.pathname + location.search);
    banner.append(" ", el("a", { href: `/login?next=${back}`, class: "button" }, t("Sign in again")));
  }
  banner.hidden = false;
  banner.scrollIntoView({ block: "nearest" });
}

function hideBanner() {
  banner.hidden = true;
  banner.replaceChildren();
}

/** A moment in the service's time zone, as the server writes it: "MM-DD HH:MM", or "HH:MM" without the date. */
function localTime(date, withDate = false) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-GB", {
    month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: config.timeZone,
  }).formatToParts(date).map(({ type, value }) => [type, value]));
  const time = `${parts.hour}:${parts.minute}`;
  return withDate ? `${parts.month}-${parts.day} ${time}` : time;
}

// --- rows ----------------------------------------------------------------------------------------------------

function isMine(item) {
  const holder = item.holder?.name;
  return holder === config.me || (!holder && item.assignee?.name === config.me);
}

function heldNow(item, now) {
  return Boolean(item.holder) && (!item.lease_until || Date.parse(item.lease_until) > now);
}

function siteName(site) {
  return config.language === "en" ? site.name_en || site.name : site.name;
}

function badges(item) {
  const found = [];
  if (item.breached) found.push(el("span", { class: "badge breached" }, t("Deadline passed")));
  if (item.escalated) found.push(el("span", { class: "badge escalated" }, t("Escalated")));
  if (item.reminders_sent) found.push(el("span", { class: "badge reminded" }, t("Reminded ×{n}", { n: item.reminders_sent })));
  return found.flatMap((badge) => [" ", badge]);
}

function mayClaim(item, held, now) {
  const free = !held || item.holder.name === config.me;
  const offered = !item.assignee || item.assignee.name === config.me || item.escalated;
  return config.mayClaim && RUNNING.includes(item.state) && free && offered;
}

function readerCell(item, held, extra) {
  if (held) {
    return el("td", {}, t("Held by {name}", { name: item.holder.display_name }),
      extra.held_since ? [el("br"), el("span", { class: "muted" }, t("since {time}", { time: extra.held_since }))] : []);
  }
  if (item.assignee) return el("td", {}, t("Assigned to {name}", { name: item.assignee.display_name }));
  return el("td", {}, el("span", { class: "muted" }, t("Nobody yet")));
}

function actionCell(item, held, now) {
  if (!mayClaim(item, held, now)) {
    return el("td", { class: "actions" }, el("a", { class: "button", href: `/studies/${encodeURIComponent(item.study_uid)}` }, t("Open (view only)")));
  }
  const mine = held && item.holder.name === config.me;
  const form = el("form", { method: "post", action: `/worklist/tasks/${item.task_id}/claim`, class: "claim inline",
    "data-task-id": item.task_id, "data-study-uid": item.study_uid },
  el("input", { type: "hidden", name: "csrf_token", value: csrfToken }),
  el("input", { type: "hidden", name: "back", value: location.pathname + location.search }),
  el("button", { type: "submit", class: "button primary big" }, mine ? t("Continue reading") : t("Claim and open")));
  return el("td", { class: "actions" }, form);
}

function taskRow(item, extra, now) {
  const held = heldNow(item, now);
  const running = RUNNING.includes(item.state);
  const left = running ? timeLeft(item.due_at, now) : null;
  const patient = extra.patient ?? (item.patient.name || "").replaceAll("^", " ").trim();
  return el("tr", { id: `task-${item.task_id}`, "data-task-id": item.task_id, class: held && item.holder.name === config.me ? "mine" : "" },
    el("td", {}, left ? el("span", { class: `left ${left.level}`, "data-due": item.due_at }, left.text) : "—"),
    el("td", {}, el("span", { class: `priority ${item.priority}` }, priorityLabel(item.priority))),
    el("td", {}, siteName(item.site)),
    el("td", {}, item.modality, item.kind === "consult" ? [" ", el("span", { class: "badge consult" }, t("Consult"))] : []),
    el("td", {}, el("strong", {}, patient), extra.sex_age ? [el("br"), el("span", { class: "muted" }, extra.sex_age)] : []),
    el("td", {}, extra.description ?? ""),
    readerCell(item, held, extra),
    el("td", {}, stateLabel(item.state), badges(item)),
    actionCell(item, held, now),
  );
}

function renderRows(items, details, now) {
  if (!items.length) {
    rowsBody.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: 9 }, t("Nothing to read here."))));
    return;
  }
  rowsBody.replaceChildren(...items.map((item) => taskRow(item, details[item.task_id] ?? {}, now)));
}

function renderNotices(notices, items, details) {
  const section = document.getElementById("notices");
  const byTask = new Map(items.map((item) => [item.task_id, item]));
  const list = document.getElementById("notice-list");
  list.replaceChildren(...notices.map((notice) => {
    const item = byTask.get(notice.task_id);
    const patient = details[notice.task_id]?.patient ?? (item?.patient.name || "").replaceAll("^", " ").trim();
    const about = item ? `${patient} · ${item.modality}` : t("Task {id}", { id: notice.task_id });
    return el("li", { class: `notice ${notice.kind}`, title: notice.message },
      el("strong", {}, noticeLabel(notice.kind)), " ",
      el("span", { class: "muted" }, localTime(new Date(notice.created_at), true)), " — ",
      el("a", { href: `#task-${notice.task_id}` }, about));
  }));
  document.getElementById("notice-count").textContent = String(notices.length);
  section.hidden = notices.length === 0;
}

// --- refreshing ----------------------------------------------------------------------------------------------

function worklistUrl() {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(config.filters)) if (value) query.set(name, value);
  if (config.view === "open") query.set("state", "open");
  query.set("limit", String(config.limit));
  query.set("offset", String(config.offset));
  return `/api/v1/worklist?${query}`;
}

async function refresh(automatic = false) {
  if (signedOut || document.hidden || (automatic && idle())) return;
  if (refreshing) return refreshing;
  refreshing = (async () => {
    try {
      const answer = await api("GET", worklistUrl());
      let items = answer.items;
      if (config.view === "mine") items = items.filter(isMine);
      const ids = items.map((item) => `task=${item.task_id}`).join("&");
      const details = (ids && (await api("GET", `${config.details}?${ids}`))) || {};
      const now = Date.now();
      renderRows(items, details, now);
      renderNotices(answer.notifications, items, details);
      document.getElementById("updated").textContent = t("Updated {time}", { time: localTime(new Date(now)) });
      if (banner.dataset.kind === "refresh") hideBanner();
    } catch (error) {
      if (error.status === 401) {
        signedOut = true;
        showBanner(errorText(401), true);
      } else {
        showBanner(error.status ? t("Something went wrong. Please try again.") : t("No connection to the server. The list will try again by itself."));
        banner.dataset.kind = "refresh";
      }
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

function tick() {
  const now = Date.now();
  for (const badge of rowsBody.querySelectorAll("[data-due]")) {
    const left = timeLeft(badge.dataset.due, now);
    badge.textContent = left.text;
    badge.className = `left ${left.level}`;
  }
}

// --- claiming ------------------------------------------------------------------------------------------------

rowsBody.addEventListener("submit", async (event) => {
  const form = event.target.closest("form.claim");
  if (!form) return;
  event.preventDefault();
  const button = form.querySelector("button");
  const label = button.textContent;
  button.disabled = true;
  button.textContent = t("Opening the study…");
  try {
    await api("POST", `/api/v1/tasks/${form.dataset.taskId}/claim`);
    location.assign(`/studies/${encodeURIComponent(form.dataset.studyUid)}`);
  } catch (error) {
    button.disabled = false;
    button.textContent = label;
    delete banner.dataset.kind;
    if (error.status === 401) signedOut = true;
    showBanner(error.status ? errorText(error.status) : t("No connection to the server. The list will try again by itself."),
      error.status === 401);
    refresh();
  }
});

// Filters apply as soon as one is chosen (the Apply button stays for keyboards and pages without scripts).
// Empty choices are left out of the address, so a bookmarked view reads cleanly.
const filtersForm = document.getElementById("filters");
filtersForm.addEventListener("change", (event) => {
  if (!event.target.matches("select")) return;
  const query = new URLSearchParams();
  for (const [name, value] of new FormData(filtersForm)) if (value) query.set(name, value);
  const search = query.toString();
  location.assign(search ? `${filtersForm.action}?${search}` : filtersForm.action);
});

setInterval(() => refresh(true), REFRESH_MS);
setInterval(tick, TICK_MS);
window.addEventListener("focus", () => { lastActivity = Date.now(); refresh(); });
document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(true); });
tick();
