// The dashboard's actions: reassign or reprioritise an overdue study, put a reader on or off duty (through the JSON
// API, then the page reloads with the new figures), and downloads that take a while shown with a progress bar.
import { api, t } from "./common.js";

const config = JSON.parse(document.getElementById("dashboard-config").textContent);
const result = document.getElementById("action-result");

function say(text, failed = false) {
  result.textContent = text;
  result.classList.toggle("alert", failed);
  result.hidden = false;
  result.scrollIntoView({ block: "nearest" });
}

async function act(form, steps) {
  const buttons = form.querySelectorAll("button");
  buttons.forEach((button) => { button.disabled = true; });
  try {
    for (const step of steps) await step();
    say(t("Done."));
    window.location.reload();
  } catch (error) {
    say(t("Could not do it: {reason}", { reason: error.message }), true);
    buttons.forEach((button) => { button.disabled = false; });
  }
}

// Each overdue study's list of readers comes from the one template of its modality (the page stays small).
for (const select of document.querySelectorAll("select[data-readers]")) {
  const options = document.getElementById(select.dataset.readers);
  if (options) select.append(options.content.cloneNode(true));
}

for (const form of document.querySelectorAll("form.act.reassign")) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const taskId = form.closest("tr").dataset.taskId;
    const { user, priority, reason } = Object.fromEntries(new FormData(form));
    const steps = [];
    if (priority) steps.push(() => api("POST", config.priority.replace("/0/", `/${taskId}/`), { priority, reason }));
    if (user) steps.push(() => api("POST", config.reassign.replace("/0/", `/${taskId}/`), { user, reason }));
    if (steps.length) act(form, steps);
  });
}

for (const form of document.querySelectorAll("form.act.duty")) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const user = form.closest("tr").dataset.reader;
    const hours = Number(new FormData(form).get("hours"));
    const starts = new Date();
    const ends = new Date(starts.getTime() + hours * 3_600_000);
    act(form, [() => api("POST", config.duty, {
      user, starts_at: starts.toISOString(), ends_at: ends.toISOString(), on_duty: form.dataset.on === "true",
    })]);
  });
}

// A file made on the server (the Excel workbook, the monthly PDF) takes a moment: a progress bar shows until it has
// arrived, then it is saved.
async function download(url, progressBox, button) {
  const label = progressBox.querySelector(".progress-label");
  progressBox.hidden = false;
  progressBox.querySelector("progress").removeAttribute("value");
  label.textContent = t("Preparing the file…");
  button.disabled = true;
  try {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) throw new Error(response.statusText);
    const file = await response.blob();
    const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "")?.[1] || "telerad";
    const link = document.createElement("a");
    link.href = URL.createObjectURL(file);
    link.download = name;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
    progressBox.hidden = true;
  } catch (error) {
    label.textContent = t("Could not do it: {reason}", { reason: error.message });
  } finally {
    button.disabled = false;
  }
}

const monthly = document.getElementById("monthly-form");
monthly.addEventListener("submit", (event) => {
  event.preventDefault();
  const url = `${monthly.action}?${new URLSearchParams(new FormData(monthly))}`;
  download(url, monthly.parentElement.querySelector(".download-progress"), monthly.querySelector("button"));
});

const excel = document.getElementById("export-xlsx");
excel.addEventListener("click", (event) => {
  event.preventDefault();
  download(excel.href, document.getElementById("export-progress"), excel);
});
document.body.dataset.ready = "true"; // every handler is attached: tests (and tools) may act on the page now
