// The station page: countdowns, urgency marks, the list kept fresh, and browser upload of a study folder by
// STOW-RS (PS3.18 10.5): DICOM files only, sent in small batches as multipart/related with a progress bar.
import { api, csrfToken, setProgress, t, timeLeft } from "./common.js";

const config = JSON.parse(document.getElementById("station-config").textContent);
const banner = document.getElementById("banner");
const message = document.getElementById("message");
const REFRESH_MS = 60_000;
const TICK_MS = 30_000;

// --- messages ------------------------------------------------------------------------------------------------

function showBanner(text, signIn = false) {
  banner.replaceChildren(text);
  if (signIn) {
    const link = document.createElement("a");
    link.className = "button";
    link.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
    link.textContent = t("Sign in again");
    banner.append(" ", link);
  }
  banner.hidden = false;
  banner.scrollIntoView({ block: "nearest" });
}

function showMessage(text) {
  message.textContent = text;
  message.hidden = false;
}

function requestError(error) {
  if (!error.status) return t("No connection to the server. Check the network and try again.");
  return {
    401: t("You have been signed out. Sign in again, then try once more."),
    403: t("Only the station that sent a study may mark it."),
    404: t("This study was not found."),
  }[error.status] ?? t("Something went wrong. Please try again.");
}

// --- the list ------------------------------------------------------------------------------------------------

function tick() {
  const now = Date.now();
  for (const badge of document.querySelectorAll("#studies [data-due]")) {
    const left = timeLeft(badge.dataset.due, now);
    badge.textContent = left.text;
    badge.className = `left ${left.level}`;
  }
}

let refreshing = false;

// Refreshing stops once nobody has touched the page for as long as a session lasts: the list's own requests must
// not keep an unattended computer signed in (an upload running counts as use).
let lastActivity = Date.now();
const idle = () => Date.now() - lastActivity > config.idleMinutes * 60_000;
for (const name of ["pointerdown", "pointermove", "keydown", "wheel", "touchstart"]) {
  window.addEventListener(name, () => { lastActivity = Date.now(); }, { passive: true });
}

/** Fetch this page again and put its list in place (status, time left and priority change as the centre works). */
async function refreshList(automatic = false) {
  if (refreshing || document.hidden || (automatic && idle() && !uploading)) return;
  refreshing = true;
  try {
    const response = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (response.redirected && new URL(response.url).pathname === "/login") {
      showBanner(t("You have been signed out. Sign in again, then try once more."), true);
      return;
    }
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const id of ["studies", "pager"]) {
      const replacement = fresh.getElementById(id);
      if (replacement) document.getElementById(id).replaceWith(document.adoptNode(replacement));
    }
    tick();
  } catch {
    // the next refresh tries again; a broken village link must not fill the page with errors
  } finally {
    refreshing = false;
  }
}

// --- the signed report ----------------------------------------------------------------------------------------

/** Print the signed PDF without leaving the page: load it in a hidden frame and print that frame; where the browser
 * will not print a PDF from a frame, open it in a new tab to print from there. */
function printReport(url) {
  document.getElementById("print-frame")?.remove();
  const frame = document.createElement("iframe");
  frame.id = "print-frame";
  frame.title = t("Print");
  // Out of sight but rendered: a PDF viewer in a frame that is not displayed at all prints a blank page.
  Object.assign(frame.style, { position: "fixed", right: "0", bottom: "0", width: "0", height: "0", border: "0" });
  frame.addEventListener("load", () => {
    try {
      frame.contentWindow.focus();
      frame.contentWindow.print();
    } catch {
      showMessage(t("The report could not be printed here. It opens in a new tab: print it from there."));
      window.open(url, "_blank", "noopener");
    }
  });
  frame.src = url;
  document.body.append(frame);
}

document.getElementById("studies-card").addEventListener("click", (event) => {
  const button = event.target.closest("button.print-report");
  if (button) printReport(button.dataset.pdf);
});

for (const button of document.querySelectorAll("button.acknowledge")) {
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api("POST", `/api/v1/studies/${encodeURIComponent(button.dataset.studyUid)}/report/critical/ack`);
      button.closest(".critical-banner").remove();
      showMessage(t("The centre has been told that you read the critical finding."));
    } catch (error) {
      button.disabled = false;
      showBanner(requestError(error), error.status === 401);
    }
  });
}

document.getElementById("studies-card").addEventListener("click", async (event) => {
  const button = event.target.closest("button.mark");
  if (!button) return;
  const emergency = button.dataset.priority === "STAT";
  const question = emergency ? t("Mark this study as an emergency? The centre will read it first.") : t("Mark this study as urgent?");
  if (!window.confirm(question)) return;
  button.disabled = true;
  try {
    await api("POST", `/api/v1/studies/${encodeURIComponent(button.dataset.studyUid)}/urgency`, { priority: button.dataset.priority });
    banner.hidden = true;
    showMessage(emergency ? t("The study is marked as an emergency.") : t("The study is marked as urgent."));
    await refreshList();
  } catch (error) {
    button.disabled = false;
    showBanner(requestError(error), error.status === 401);
  }
});

// --- reading a folder ----------------------------------------------------------------------------------------

const BATCH_FILES = 8;
const BATCH_BYTES = 16 * 2 ** 20;
const RETRY_PAUSES_MS = [2_000, 5_000, 15_000];
const DICOMDIR_CLASS = "1.2.840.10008.1.3.10";
const LONG_VRS = new Set(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]);

function readEntries(reader) {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

/** Every file under a dropped entry (a folder is read in chunks until it says it has no more). */
async function entryFiles(entry, path = "") {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    return [{ file, path: path + entry.name }];
  }
  if (!entry.isDirectory) return [];
  const reader = entry.createReader();
  const found = [];
  for (let chunk = await readEntries(reader); chunk.length; chunk = await readEntries(reader)) {
    for (const child of chunk) found.push(...(await entryFiles(child, `${path}${entry.name}/`)));
  }
  return found;
}

async function droppedFiles(dataTransfer) {
  const entries = [...(dataTransfer.items ?? [])].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.length) return [...dataTransfer.files].map((file) => ({ file, path: file.name }));
  const found = [];
  for (const entry of entries) found.push(...(await entryFiles(entry)));
  return found;
}

/**
 * Whether the file is DICOM (PS3.10 7.1: a 128-byte preamble, then "DICM") and, if so, its SOP Class and SOP
 * Instance UIDs from the File Meta Information (group 0002, always explicit VR little endian).
 */
export function fileMeta(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 132 || String.fromCharCode(...bytes.subarray(128, 132)) !== "DICM") return null;
  const text = (start, length) => String.fromCharCode(...bytes.subarray(start, start + length)).replace(/[\0 ]+$/, "");
  const meta = { sopClass: null, sopInstance: null };
  let at = 132;
  while (at + 8 <= bytes.length) {
    const group = view.getUint16(at, true);
    const element = view.getUint16(at + 2, true);
    if (group !== 0x0002) break;
    const vr = String.fromCharCode(bytes[at + 4], bytes[at + 5]);
    const long = LONG_VRS.has(vr);
    if (long && at + 12 > bytes.length) break;
    const length = long ? view.getUint32(at + 8, true) : view.getUint16(at + 6, true);
    const start = at + (long ? 12 : 8);
    if (start + length > bytes.length) break;
    if (element === 0x0002) meta.sopClass = text(start, length);
    if (element === 0x0003) meta.sopInstance = text(start, length);
    at = start + length;
  }
  return meta;
}

// --- the STOW-RS request and its answer ------------------------------------------------------------------------

/** The multipart/related body of one batch (PS3.18 8.6.1.2): one application/dicom part per file. */
export function multipartBody(files, boundary) {
  const parts = [];
  for (const { file } of files) {
    parts.push(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, file, "\r\n");
  }
  parts.push(`--${boundary}--\r\n`);
  return new Blob(parts);
}

const text = (item, tag) => item?.[tag]?.Value?.[0];

/** Why an instance failed, from its Failure Reason (0008,1197) — PS3.18 10.5.3 and the C-STORE statuses of PS3.4
 * B.2.3 — and any text the server added: Error Comment (0000,0902) or a private (0009,xxxx) string. */
export function failureText(item) {
  const code = Number(text(item, "00081197"));
  let reason;
  if (code >= 0xa700 && code <= 0xa7ff) reason = t("The server is out of storage space. Call the reading centre.");
  else if (code >= 0xa900 && code <= 0xa9ff) reason = t("The file does not match its DICOM type.");
  else if (code === 0xc122) reason = t("This file's compression is not accepted.");
  else if (code >= 0xc000 && code <= 0xcfff) reason = t("The server cannot read this file.");
  else if (code === 0x0110) reason = t("The server could not process this file.");
  else if (code === 0x0122) reason = t("This kind of DICOM file is not accepted.");
  else if (code === 0x0124) reason = t("This station may not send this file.");
  else if (code === 0x0111) reason = t("This image is already stored on the server.");
  else reason = t("Refused by the server (code {code}).", { code: Number.isFinite(code) ? `0x${code.toString(16).toUpperCase().padStart(4, "0")}` : "?" });
  const comments = Object.entries(item ?? {})
    .filter(([tag, value]) => (tag === "00000902" || tag.startsWith("0009")) && typeof value?.Value?.[0] === "string")
    .map(([, value]) => value.Value[0]);
  return comments.length ? `${reason} (${comments.join("; ")})` : reason;
}

function batchError(status) {
  if (status === 413) return t("The files are too large for one sending. Call the reading centre.");
  if (status === 401) return t("You have been signed out. Sign in again, then try once more.");
  if (status === 403) return t("This station may not upload studies.");
  if (!status) return t("No answer from the server.");
  return t("The server refused the upload (error {status}).", { status });
}

/** Send one batch; `onBytes(sent)` follows the upload. Resolves with { status, body } (status 0: no answer). */
function sendBatch(files, onBytes) {
  const boundary = `telerad-${crypto.getRandomValues(new Uint32Array(4)).join("-")}`;
  const body = multipartBody(files, boundary);
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();
    request.open("POST", config.stow);
    request.setRequestHeader("Content-Type", `multipart/related; type="application/dicom"; boundary=${boundary}`);
    request.setRequestHeader("Accept", "application/dicom+json");
    request.setRequestHeader("X-CSRFToken", csrfToken);
    request.upload.onprogress = (event) => onBytes(event.lengthComputable ? event.loaded / event.total : 0);
    request.onload = () => {
      let answer = null;
      try {
        answer = request.responseText ? JSON.parse(request.responseText) : null;
      } catch {
        answer = null;
      }
      resolve({ status: request.status, body: Array.isArray(answer) ? answer[0] : answer });
    };
    request.onerror = request.ontimeout = request.onabort = () => resolve({ status: 0, body: null });
    request.send(body);
  });
}

function pause(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The batch's outcome per file: stored, or failed with a reason. Each item of the answer accounts for one file
 * (matched by SOP Instance UID; a part the server could not read has no UID, and such failures go, in order, to the
 * files not otherwise accounted for — the server answers for the parts in the order they were sent). */
function outcomes(batch, { status, body }) {
  const storedItems = body?.["00081199"]?.Value ?? [];
  const failedItems = body?.["00081198"]?.Value ?? [];
  const stored = new Map();
  for (const item of storedItems) stored.set(text(item, "00081155"), (stored.get(text(item, "00081155")) ?? 0) + 1);
  const failed = new Map();
  for (const item of failedItems) {
    const uid = text(item, "00081155");
    failed.set(uid, [...(failed.get(uid) ?? []), failureText(item)]);
  }
  const known = new Set(batch.map((entry) => entry.meta.sopInstance));
  const unnamed = failedItems.filter((item) => !known.has(text(item, "00081155"))).map(failureText);
  let whole = null;
  if (status !== 200) {
    const answered = storedItems.length || failedItems.length;
    whole = answered ? t("The server could not process this file.") : batchError(status);
    if (!answered && typeof body?.detail === "string") whole = `${whole} (${body.detail})`;
  }
  return batch.map((entry) => {
    const uid = entry.meta.sopInstance;
    if (uid && stored.get(uid) > 0) {
      stored.set(uid, stored.get(uid) - 1);
      return { entry, ok: true };
    }
    if (uid && failed.get(uid)?.length) return { entry, ok: false, reason: failed.get(uid).shift() };
    if (unnamed.length) return { entry, ok: false, reason: unnamed.shift() };
    return whole === null ? { entry, ok: true } : { entry, ok: false, reason: whole };
  });
}

// --- the upload as a whole --------------------------------------------------------------------------------------

const bar = document.getElementById("upload-bar");
const statusLine = document.getElementById("upload-status");
const summary = document.getElementById("upload-summary");
const chooseButton = document.getElementById("choose-folder");
let uploading = false;

function batches(entries) {
  const all = [];
  let current = [];
  let bytes = 0;
  for (const entry of entries) {
    if (current.length && (current.length >= BATCH_FILES || bytes + entry.file.size > BATCH_BYTES)) {
      all.push(current);
      current = [];
      bytes = 0;
    }
    current.push(entry);
    bytes += entry.file.size;
  }
  if (current.length) all.push(current);
  return all;
}

function showSummary(stored, failures, skipped, stopped) {
  const lines = [document.createElement("h2")];
  lines[0].textContent = stopped ? t("Upload stopped.") : t("Upload finished.");
  const add = (tag, className, content) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    node.textContent = content;
    lines.push(node);
    return node;
  };
  add("p", "stored", t("Stored: {n} files", { n: stored }));
  if (failures.length) {
    add("p", "failed", t("Failed: {n} files", { n: failures.length }));
    const list = document.createElement("ul");
    list.className = "failures";
    for (const { entry, reason } of failures) {
      const item = document.createElement("li");
      item.textContent = `${entry.path} — ${reason}`;
      list.append(item);
    }
    lines.push(list);
  }
  if (skipped) add("p", "muted", t("Skipped {n} files that are not DICOM images.", { n: skipped }));
  summary.replaceChildren(...lines);
  summary.hidden = false;
}

async function upload(files) {
  if (uploading || !files.length) return;
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  uploading = true;
  chooseButton.disabled = true;
  banner.hidden = true;
  summary.hidden = true;
  document.getElementById("upload-progress").hidden = false;
  try {
    statusLine.textContent = t("Reading the folder…");
    const dicom = [];
    let skipped = 0;
    for (const [index, entry] of files.entries()) {
      const head = new Uint8Array(await entry.file.slice(0, 8192).arrayBuffer());
      const meta = fileMeta(head);
      if (meta && meta.sopClass !== DICOMDIR_CLASS) dicom.push({ ...entry, meta });
      else skipped += 1;
      if (index % 20 === 0 || index === files.length - 1) {
        statusLine.textContent = t("Checking {done} of {total} files…", { done: index + 1, total: files.length });
        setProgress(bar, index + 1, files.length);
      }
    }
    if (!dicom.length) {
      setProgress(bar, 0, 0);
      showBanner(t("No DICOM files were found in this folder."));
      return;
    }
    const total = dicom.reduce((sum, entry) => sum + entry.file.size, 0);
    let sentBytes = 0;
    let doneFiles = 0;
    let stored = 0;
    const failures = [];
    let stopped = false;
    setProgress(bar, 0, total);
    for (const batch of batches(dicom)) {
      const batchBytes = batch.reduce((sum, entry) => sum + entry.file.size, 0);
      statusLine.textContent = t("Sending {done} of {total} files…", { done: doneFiles + batch.length, total: dicom.length });
      let answer;
      for (let attempt = 0; ; attempt += 1) {
        answer = await sendBatch(batch, (share) => setProgress(bar, sentBytes + share * batchBytes, total));
        const retry = answer.status === 0 || answer.status === 502 || answer.status === 503 || answer.status === 504;
        if (!retry || attempt >= RETRY_PAUSES_MS.length) break;
        statusLine.textContent = t("The network is slow or broken. Trying again…");
        await pause(RETRY_PAUSES_MS[attempt]);
      }
      for (const result of outcomes(batch, answer)) {
        if (result.ok) stored += 1;
        else failures.push(result);
      }
      sentBytes += batchBytes;
      doneFiles += batch.length;
      setProgress(bar, sentBytes, total);
      if (answer.status === 401 || answer.status === 403) {
        // nothing more will be accepted: say what happened to the files not sent
        for (const entry of dicom.slice(doneFiles)) failures.push({ entry, reason: batchError(answer.status) });
        stopped = true;
        showBanner(batchError(answer.status), answer.status === 401);
        break;
      }
    }
    statusLine.textContent = "";
    showSummary(stored, failures, skipped, stopped);
    if (stored) refreshList();
  } catch (error) {
    showBanner(requestError(error));
  } finally {
    uploading = false;
    chooseButton.disabled = false;
  }
}

if (config.mayUpload) {
  const input = document.getElementById("folder");
  const zone = document.getElementById("dropzone");
  chooseButton.addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    const files = [...input.files].map((file) => ({ file, path: file.webkitRelativePath || file.name }));
    input.value = "";
    upload(files);
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    upload(await droppedFiles(event.dataTransfer));
  });
  window.addEventListener("beforeunload", (event) => {
    if (!uploading) return;
    event.preventDefault();
    event.returnValue = t("An upload is still running. Leave the page anyway?");
  });
}

setInterval(() => refreshList(true), REFRESH_MS);
setInterval(tick, TICK_MS);
window.addEventListener("focus", () => { lastActivity = Date.now(); refreshList(); });
tick();
document.body.dataset.ready = "true"; // every handler is attached: tests (and tools) may act on the page now
