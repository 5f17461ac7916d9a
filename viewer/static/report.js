// The report editor beside the images (templates/_report_panel.html): a template's structured fields, findings
// and impression, reusable phrases, the critical-finding flag, autosave of the draft, and signing with the
// password; once signed, the signed parts with signer and time, the PDF, countersigning and addenda.
//
// Talks to the report API (reports/api.py): GET|PUT /api/v1/studies/{uid}/report, POST .../sign,
// .../countersign, .../addenda, GET .../pdf and GET /api/v1/report-templates.

import { api, csrfToken, t } from "./common.js";

const panel = document.getElementById("report");
const AUTOSAVE_MS = 2000;
const RETRY_MS = 10000;
const MEASURED_POLL_MS = 5000; // an ECG still being measured: ask again for the prefilled draft
const MEASURED_POLLS = 24;
const LANG = document.documentElement.lang === "en" ? "en" : "zh";
const TIME_ZONE = document.documentElement.dataset.timeZone || undefined;
const STATES = {
  draft: "Draft",
  preliminary: "Preliminary: waiting for the countersignature",
  final: "Final",
  amended: "Final, with addenda",
};
const ROLES = { author: "Signed by", countersign: "Countersigned by", cosign: "Co-signed by" };
const SIGNED = new Set(["preliminary", "final", "amended"]);

const $ = (id) => document.getElementById(id);
const form = $("report-form");
const templateSelect = $("report-template");
const fieldsBox = $("report-fields");
const findings = $("report-findings");
const impression = $("report-impression");
const phraseSelect = $("report-phrase");
const critical = $("report-critical");
const category = $("report-critical-category");
const dialog = $("sign-dialog");
const password = $("sign-password");

const state = {
  report: null, // the report as the server last sent it
  templates: [],
  categories: [],
  revision: 0,
  writable: false,
  dirty: false, // typed since the last save was sent
  saving: null, // the save in flight (a promise)
  again: false, // typed while a save was in flight: save once more afterwards
  timer: 0,
  polls: 0, // times the unsaved draft of an ECG still being measured was asked for again
  lastText: findings, // where a phrase goes: the text area the reader was last in
  signing: null, // what the dialog signs: "sign", "countersign" or "addendum"
};

const urls = (() => {
  if (!panel) return {};
  const base = `${panel.dataset.api}/studies/${encodeURIComponent(panel.dataset.study)}/report`;
  return {
    report: base, sign: `${base}/sign`, countersign: `${base}/countersign`, cosign: `${base}/cosign`, addenda: `${base}/addenda`,
    pdf: `${base}/pdf`, templates: `${panel.dataset.api}/report-templates`,
  };
})();

// --- small helpers -------------------------------------------------------------------------------

/** `item[key]` in the page's language: templates write `key` in Chinese and `key_en` in English. */
function pick(item, key) {
  if (item == null) return null;
  const names = LANG === "en" ? [`${key}_en`, key] : [key, `${key}_en`];
  for (const name of names) if (item[name] != null && item[name] !== "") return String(item[name]);
  return null;
}

/** The label of a field, option, phrase or section, or the name of a template or critical category. */
function labelOf(item) {
  return pick(item, "label") ?? pick(item, "name") ?? String(item?.id ?? item?.value ?? item?.code ?? "");
}

/** A server time (ISO 8601) in the service's time zone: "14:02", or "2026-03-04 14:02" with the date. */
function clockText(iso, withDate = false) {
  const when = iso ? new Date(iso) : new Date();
  if (Number.isNaN(when.getTime())) return String(iso);
  const format = new Intl.DateTimeFormat("en-GB", {
    timeZone: TIME_ZONE, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    hourCycle: "h23",
  });
  const part = Object.fromEntries(format.formatToParts(when).map(({ type, value }) => [type, value]));
  const time = `${part.hour}:${part.minute}`;
  return withDate ? `${part.year}-${part.month}-${part.day} ${time}` : time;
}

function personName(person) {
  if (person == null) return "";
  if (typeof person !== "object") return String(person);
  return person.display_name || person.name || "";
}

function element(tag, properties = {}, ...children) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children.filter((child) => child != null && child !== ""));
  return node;
}

/** A JSON request that keeps the whole answer (an API problem's detail and its fields): `{ok, status, data}`. */
async function call(method, url, body, { keepalive = false } = {}) {
  let response;
  try {
    response = await fetch(url, {
      method,
      credentials: "same-origin",
      keepalive,
      headers: { "Accept": "application/json", "X-CSRFToken": csrfToken, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch {
    return { ok: false, status: 0, data: { detail: t("the server cannot be reached") } };
  }
  const data = response.headers.get("Content-Type")?.includes("json") ? await response.json().catch(() => null) : null;
  return { ok: response.ok, status: response.status, data: data ?? { detail: response.statusText } };
}

/** Why a request failed, as the API said (a lapsed session in the page's language). */
function reasonOf(answer) {
  if (answer.status === 401) return t("You have been signed out. Sign in again, then try once more.");
  return answer.data?.detail || answer.data?.title || String(answer.status);
}

function showError(text) {
  $("report-error").textContent = text;
  $("report-error").hidden = !text;
}

/** A notice that stays until the reader closes it (or the next one replaces it). */
function showNotice(text) {
  $("report-notice-text").textContent = text;
  $("report-notice").hidden = !text;
}

function showSave(kind, text) {
  panel.dataset.save = kind;
  $("report-save").textContent = text;
  $("report-save").className = `report-save ${kind}`;
}

// --- loading and showing the report --------------------------------------------------------------

function templateById(id) {
  return state.templates.find((template) => template.id === id) ?? (state.report?.template?.id === id ? state.report.template : null);
}

/** What the server lets this user do with the report now (`may` in the API's answer); every action checks again. */
function may(report, action) {
  return Boolean(report?.may?.[action]);
}

/** Whether the Sign button is offered: the reading task's holder signs; a proposal not yet saved is saved first. */
function maySign(report) {
  return report.state === "draft" && (may(report, "sign") || (report.saved === false && may(report, "edit")));
}

async function load() {
  const [report, installed] = await Promise.all([api("GET", urls.report), api("GET", urls.templates)]);
  state.templates = installed.templates;
  state.categories = installed.critical_categories;
  show(report);
}

/** Show `report` as the server has it (the form's contents are replaced). */
function show(report) {
  state.report = report;
  state.revision = report.revision ?? 0;
  state.dirty = false;
  state.writable = report.state === "draft" && may(report, "edit");
  panel.dataset.state = report.state;
  $("report-state").textContent = t(STATES[report.state] ?? report.state);
  $("report-state").className = `report-state ${report.state}`;

  fillTemplates(report.template_id);
  renderFields(templateById(report.template_id), report.fields ?? {});
  showPrefill(report, templateById(report.template_id));
  findings.value = report.findings ?? "";
  impression.value = report.impression ?? "";
  labelSections(templateById(report.template_id));
  fillPhrases(templateById(report.template_id));
  fillCategories(report.critical_category ?? "");
  critical.checked = Boolean(report.critical);
  category.required = critical.checked;
  form.hidden = false;
  setWritable(state.writable);
  renderSigned(report);

  if (state.writable) {
    const saved = report.updated_at && state.revision ? t("Saved {time}", { time: clockText(report.updated_at) }) : "";
    showSave(saved ? "saved" : "", saved || t("The draft saves itself as you type."));
  } else if (report.state === "draft") {
    showSave("readonly", t("Read only: you may not write this report."));
  } else {
    showSave("readonly", t("Signed: the report can no longer be changed."));
  }
}

/** The templates made for the modalities of `selected` (the one the server chose for the study), by name. */
function fillTemplates(selected) {
  const modalities = new Set(templateById(selected)?.modalities ?? []);
  const suitable = state.templates.filter((template) =>
    !modalities.size || template.modalities.some((modality) => modalities.has(modality)));
  const options = suitable.map((template) => element("option", { value: template.id, textContent: labelOf(template) }));
  if (selected && !templateById(selected)) options.unshift(element("option", { value: selected, textContent: selected }));
  templateSelect.replaceChildren(...options);
  templateSelect.value = selected ?? "";
}

/** The template's structured fields as inputs, filled with `values`. */
function renderFields(template, values) {
  const rows = (template?.fields ?? []).map((field) => {
    const key = field.id;
    const id = `report-field-${key}`;
    const value = key in values ? values[key] : field.default;
    let input;
    if (field.type === "choice") {
      input = element("select", { id }, element("option", { value: "", textContent: "—" }),
        ...field.options.map((option) => element("option", { value: option.value, textContent: labelOf(option) })));
      input.value = value == null ? "" : String(value);
    } else if (field.type === "number") {
      input = element("input", { id, type: "number", inputMode: "decimal", step: "any", value: value ?? "" });
    } else {
      input = element("input", { id, type: "text", value: value ?? "" });
    }
    input.dataset.field = key;
    input.dataset.type = field.type;
    const unit = field.type === "number" ? element("span", { className: "unit", textContent: pick(field, "unit") ?? "" }) : null;
    if (!unit) input.classList.add("wide"); // over the unit column too
    return element("div", { className: "report-field" }, element("label", { htmlFor: id, textContent: labelOf(field) }), input, unit);
  });
  fieldsBox.replaceChildren(...rows);
  fieldsBox.hidden = rows.length === 0;
}

const PREFILL_NOTES = {
  telerad: "Rate, intervals and axis are prefilled from Telerad's own measurements.",
  device: "Rate, intervals and axis are prefilled from the ECG device's measurements (Telerad could not measure this tracing).",
  waiting: "Telerad is still measuring this ECG: open the report again in a moment for the figures.",
};

/** Where an ECG template's figures come from, under the fields (while the draft is being written). While the
 * ECG is still being measured and nothing is saved or typed, the proposed draft is asked for again. */
function showPrefill(report, template) {
  const note = $("report-prefill");
  const prefilled = (template?.fields ?? []).some((field) => field.prefill);
  const source = report.measurements ? report.measurements.source ?? "waiting" : null;
  note.hidden = !(prefilled && source && report.state === "draft" && PREFILL_NOTES[source]);
  note.textContent = note.hidden ? "" : t(PREFILL_NOTES[source]);
  if (source === "waiting" && prefilled && report.saved === false && state.polls < MEASURED_POLLS) {
    state.polls += 1;
    setTimeout(async () => {
      if (state.dirty || state.saving || state.report?.saved !== false) return;
      const fresh = await api("GET", urls.report).catch(() => null);
      if (fresh && !state.dirty && !state.saving && state.report?.saved === false) show(fresh);
    }, MEASURED_POLL_MS);
  }
}

function fieldValues() {
  const values = {};
  for (const input of fieldsBox.querySelectorAll("[data-field]")) {
    if (input.dataset.type === "number") {
      values[input.dataset.field] = input.value === "" || Number.isNaN(input.valueAsNumber) ? null : input.valueAsNumber;
    } else {
      values[input.dataset.field] = input.value;
    }
  }
  return values;
}

function phrasesOf(template) {
  return template?.phrases ?? [];
}

/** The text areas by section, and their labels as the page wrote them (the template may name them its own way). */
const SECTIONS = { findings, impression };
const SECTION_LABELS = Object.fromEntries(
  Object.entries(SECTIONS).map(([part, area]) => [part, area && document.querySelector(`label[for="${area.id}"]`)]),
);
const DEFAULT_SECTION_LABELS = Object.fromEntries(
  Object.entries(SECTION_LABELS).map(([part, label]) => [part, label?.textContent]),
);

function labelSections(template) {
  for (const [part, label] of Object.entries(SECTION_LABELS)) {
    label.textContent = labelOf(template?.sections?.[part] ?? null) || DEFAULT_SECTION_LABELS[part];
  }
}

/** The phrases as options, grouped by the section they are written for (findings, impression, any). */
function fillPhrases(template) {
  const groups = new Map();
  phrasesOf(template).forEach((phrase, index) => {
    const label = labelOf(phrase) || phrase.text;
    const part = SECTIONS[phrase.section] ? phrase.section : "";
    if (!groups.has(part)) groups.set(part, []);
    groups.get(part).push(element("option", { value: String(index), textContent: label, title: phrase.text }));
  });
  const children = [...groups].map(([part, options]) =>
    part ? element("optgroup", { label: SECTION_LABELS[part].textContent }, ...options) : options).flat();
  phraseSelect.replaceChildren(phraseSelect.options[0], ...children);
  phraseSelect.value = "";
  $("report-phrases-row").hidden = children.length === 0;
}

/** The kinds of critical finding the service is configured with (reports.critical_categories). */
function fillCategories(selected) {
  const options = state.categories.map((item) => element("option", { value: item.code, textContent: labelOf(item) }));
  if (selected && !options.some((option) => option.value === selected)) {
    options.push(element("option", { value: selected, textContent: selected }));
  }
  category.replaceChildren(category.options[0], ...options);
  category.value = selected;
}

/** A flag without its category is not saved yet: say so beside the flag. */
function showCriticalHint() {
  $("report-critical-hint").hidden = !(state.writable && critical.checked && !category.value);
}

function setWritable(writable) {
  for (const input of form.querySelectorAll("input, select, textarea")) {
    if (input.matches("textarea, input[type=text], input[type=number]")) input.readOnly = !writable;
    else input.disabled = !writable;
  }
  form.classList.toggle("readonly", !writable);
  $("report-phrases-row").hidden ||= !writable;
  $("report-draft-actions").hidden = !writable || !maySign(state.report);
  category.disabled = !writable || !critical.checked;
  $("report-critical-box").hidden = !writable && !critical.checked; // a signed report shows the flag only if set
  showCriticalHint();
}

function signerOf(signature) {
  return personName(signature?.signer);
}

function renderSigned(report) {
  const all = report.signatures ?? [];
  const signatures = all.filter((signature) => signature.addendum_id == null);
  const addenda = report.addenda ?? [];
  const signed = SIGNED.has(report.state) || signatures.length > 0;
  $("report-signed").hidden = !signed;
  $("report-signatures").replaceChildren(...signatures.map((signature) => element("li", { className: "signature" },
    element("span", { className: "role", textContent: t(ROLES[signature.role] ?? "Signed by") }), " ",
    element("strong", { className: "signer", textContent: signerOf(signature) }), " ",
    element("time", { className: "time", dateTime: signature.signed_at ?? "", textContent: clockText(signature.signed_at, true) }))));
  $("report-pdf-line").hidden = !all.some((signature) => signature.has_pdf !== false);
  $("report-pdf").href = urls.pdf;
  $("report-countersign-line").hidden = !(report.state === "preliminary" && may(report, "countersign"));
  $("report-cosign-line").hidden = !may(report, "cosign");
  $("report-addenda-box").hidden = addenda.length === 0;
  $("report-addenda").replaceChildren(...addenda.map((addendum) => {
    const signature = all.find((each) => each.addendum_id === addendum.id);
    return element("li", { className: "addendum" },
      element("p", { className: "addendum-text", textContent: addendum.text }),
      element("p", { className: "muted" }, t("Signed by {name} at {time}", {
        name: signature ? signerOf(signature) : personName(addendum.author),
        time: clockText(signature?.signed_at ?? addendum.signed_at ?? addendum.created_at, true),
      })));
  }));
  $("report-addendum-form").hidden = !may(report, "add_addendum");
}

// --- autosave ------------------------------------------------------------------------------------

function draftBody() {
  return {
    template_id: templateSelect.value,
    fields: fieldValues(),
    findings: findings.value,
    impression: impression.value,
    critical: critical.checked && Boolean(category.value), // the API refuses a flag without its category
    critical_category: critical.checked ? category.value : "",
    revision: state.revision,
  };
}

function changed() {
  if (!state.writable) return;
  state.dirty = true;
  if (!state.saving) showSave("dirty", t("Not saved yet"));
  clearTimeout(state.timer);
  state.timer = setTimeout(save, AUTOSAVE_MS);
}

/** Save the draft now if anything changed; resolves to true when everything typed is on the server. */
async function save({ keepalive = false } = {}) {
  clearTimeout(state.timer);
  if (state.saving) {
    state.again = true;
    return state.saving;
  }
  if (!state.dirty || !state.writable) return !state.dirty;
  state.saving = (async () => {
    let saved;
    do {
      state.again = false;
      saved = await putDraft(keepalive);
    } while (saved && state.dirty && state.again);
    return saved && !state.dirty;
  })();
  try {
    return await state.saving;
  } finally {
    state.saving = null;
  }
}

async function putDraft(keepalive, body = draftBody(), { replace = false } = {}) {
  state.dirty = false;
  showSave("saving", t("Saving…"));
  const answer = await call("PUT", urls.report, body, { keepalive });
  if (answer.ok) {
    if (replace && answer.data?.state) show(answer.data); // a new template: its fields as the server made them
    state.revision = answer.data?.revision ?? state.revision + 1;
    if (answer.data && typeof answer.data === "object") state.report = { ...state.report, ...answer.data };
    $("report-draft-actions").hidden = !state.writable || !maySign(state.report);
    if (state.dirty) showSave("dirty", t("Not saved yet")); // typed meanwhile: the next save is on its way
    else showSave("saved", t("Saved {time}", { time: clockText(answer.data?.updated_at) }));
    showError("");
    return true;
  }
  if (answer.status === 409) {
    // someone (another window, another reader) saved or signed first: show the server's version
    const typed = { findings: body.findings ?? findings.value, impression: body.impression ?? impression.value };
    await reload();
    const lost = typed.findings !== findings.value || typed.impression !== impression.value;
    showNotice(state.report?.state === "draft"
      ? t("The report was changed elsewhere (revision {revision}); the saved version is shown again.", { revision: state.revision })
        + (lost ? (LANG === "en" ? " " : "") + t("Your last changes were not saved.") : "")
      : t("The report was signed elsewhere; it can no longer be changed."));
    return false;
  }
  if (answer.status === 403 || answer.status === 404) {
    state.writable = false;
    setWritable(false);
    showSave("readonly", t("Read only: you may not write this report."));
    showError(t("Not saved: {reason}", { reason: reasonOf(answer) }));
    return false;
  }
  state.dirty = true; // keep what was typed, and try again
  showSave("error", t("Not saved: {reason}", { reason: reasonOf(answer) }));
  showError(t("Not saved: {reason}", { reason: reasonOf(answer) }));
  if (answer.status === 0 || answer.status >= 500) state.timer = setTimeout(save, RETRY_MS);
  return false;
}

async function reload() {
  try {
    show(await api("GET", urls.report));
  } catch (error) {
    showError(t("The report could not be loaded: {reason}", { reason: error.message }));
  }
}

// --- the phrase picker, the template chooser and the critical flag -------------------------------

/** The chosen phrase goes into its section's text (else the text the reader was last in), at the cursor. */
function insertPhrase() {
  const phrase = phrasesOf(templateById(templateSelect.value))[Number(phraseSelect.value)];
  phraseSelect.value = "";
  if (!phrase || !state.writable) return;
  const area = SECTIONS[phrase.section] ?? state.lastText;
  area.focus();
  area.setRangeText(phrase.text, area.selectionStart, area.selectionEnd, "end");
  area.dispatchEvent(new Event("input", { bubbles: true }));
}

/** The text a template starts its findings or impression with. */
function defaultText(template, part) {
  return template?.[part] ?? "";
}

/** Another template: saved at once; the server makes its fields (its defaults, an ECG's measurements) and
 * keeps the values of fields both templates have. Untouched default text becomes the new template's. */
async function changeTemplate() {
  const chosen = templateSelect.value;
  templateSelect.value = state.report.template_id;
  if (!(await save())) return;
  const before = templateById(state.report.template_id);
  const after = templateById(chosen);
  const body = { template_id: chosen, revision: state.revision };
  for (const [part, area] of Object.entries(SECTIONS)) {
    if (!area.value.trim() || area.value === defaultText(before, part)) body[part] = defaultText(after, part);
  }
  // a field both templates have keeps what the reader wrote, but not the old template's default
  const values = fieldValues();
  const defaults = {};
  for (const field of after?.fields ?? []) {
    const old = before?.fields?.find((each) => each.id === field.id);
    const value = values[field.id];
    if (old && (value == null || value === "" || value === old.default)) defaults[field.id] = field.default ?? null;
  }
  if (Object.keys(defaults).length) body.fields = defaults;
  templateSelect.value = chosen;
  form.inert = true;
  state.saving = putDraft(false, body, { replace: true });
  try {
    if (!(await state.saving)) templateSelect.value = state.report.template_id; // refused: still the old one
  } finally {
    state.saving = null;
    form.inert = false;
  }
}

// --- signing -------------------------------------------------------------------------------------

const SIGNING = {
  sign: { title: "Sign the report", button: "Sign", failed: "The report is not signed: {reason}" },
  countersign: { title: "Countersign the report", button: "Countersign", failed: "The report is not countersigned: {reason}" },
  addendum: { title: "Sign the addendum", button: "Sign the addendum", failed: "The addendum is not signed: {reason}" },
  cosign: { title: "Co-sign the report", button: "Co-sign", failed: "The report is not co-signed: {reason}" },
};

/** What must be written before the report is signed (the API checks the same): the impression, the template's
 * required fields, the category of a critical finding. */
function missingBeforeSigning() {
  if (!impression.value.trim()) {
    return { input: impression, message: t("Fill in {field} before signing.", { field: SECTION_LABELS.impression.textContent }) };
  }
  for (const field of templateById(templateSelect.value)?.fields ?? []) {
    const input = $(`report-field-${field.id}`);
    if (field.required && input && input.value === "") {
      return { input, message: t("Fill in {field} before signing.", { field: labelOf(field) }) };
    }
  }
  if (critical.checked && !category.value) {
    return { input: category, message: t("Choose the category of the critical finding before signing.") };
  }
  return null;
}

async function openSigning(kind) {
  showError("");
  if (kind === "sign") {
    const missing = missingBeforeSigning();
    if (missing) {
      showError(missing.message);
      missing.input.focus();
      return;
    }
    if (state.report.saved === false) state.dirty = true; // the API signs a saved draft only
    if (!(await save())) {
      showError($("report-error").textContent || t("The draft could not be saved, so it cannot be signed yet."));
      return;
    }
  }
  if (kind === "addendum" && !$("report-addendum-text").value.trim()) {
    showError(t("Write the addendum first."));
    $("report-addendum-text").focus();
    return;
  }
  state.signing = kind;
  $("sign-title").textContent = t(SIGNING[kind].title);
  $("sign-confirm").textContent = t(SIGNING[kind].button);
  password.value = "";
  showSigningError("");
  busy(false);
  dialog.showModal();
  password.focus();
}

function showSigningError(text) {
  $("sign-error").textContent = text;
  $("sign-error").hidden = !text;
}

function busy(on) {
  dialog.dataset.busy = on ? "true" : "";
  $("sign-progress").hidden = !on;
  $("sign-confirm").disabled = on;
  $("sign-cancel").disabled = on;
  password.readOnly = on;
}

async function confirmSigning(event) {
  event.preventDefault();
  if (dialog.dataset.busy) return;
  const kind = state.signing;
  if (!password.value) {
    showSigningError(t("Enter your password."));
    password.focus();
    return;
  }
  showSigningError("");
  busy(true);
  const body = kind === "addendum" ? { text: $("report-addendum-text").value, password: password.value } : { password: password.value };
  const answer = await call("POST", urls[kind === "addendum" ? "addenda" : kind], body);
  busy(false);
  if (!answer.ok) {
    const wrongPassword = answer.status === 403 && /password/i.test(reasonOf(answer)); // reports/api.py WRONG_PASSWORD
    showSigningError(wrongPassword
      ? t("Wrong password: nothing was signed. Enter the password you sign in with.")
      : answer.status === 403
        ? t("You may not do this: {reason}", { reason: reasonOf(answer) })
        : t(SIGNING[kind].failed, { reason: reasonOf(answer) }));
    password.select();
    password.focus();
    if (answer.status === 409) await reload();
    return;
  }
  password.value = "";
  dialog.close();
  if (kind === "addendum") $("report-addendum-text").value = "";
  if (answer.data?.state) show(answer.data);
  else await reload();
  const signatures = state.report?.signatures ?? [];
  const last = signatures.at(-1);
  showNotice("");
  if (last) showSave("signed", t("Signed {time}", { time: clockText(last.signed_at, true) }));
  const side = panel.closest(".side");
  if (side) side.scrollTop = 0; // the state, the signer and the PDF are at the top of the panel
}

// --- wiring --------------------------------------------------------------------------------------

/** Wire the panel and load the report (the page has no panel for whoever has no report to write: stations). */
function start() {
  form.addEventListener("input", (event) => {
    if (event.target === phraseSelect || event.target === templateSelect) return;
    changed();
  });
  form.addEventListener("change", (event) => {
    if (event.target === phraseSelect) insertPhrase();
    else if (event.target === templateSelect) changeTemplate();
    else if (event.target === critical) {
      category.disabled = !critical.checked;
      category.required = critical.checked;
      if (critical.checked && !category.value) category.focus();
      showCriticalHint();
      changed();
    } else if (event.target === category) {
      showCriticalHint();
      changed();
    } else if (event.target.matches("select, input[type=checkbox]")) changed();
  });
  form.addEventListener("focusout", (event) => {
    if (event.target.matches("textarea, input") && state.dirty) save();
  });
  for (const area of [findings, impression]) area.addEventListener("focus", () => { state.lastText = area; });
  form.addEventListener("submit", (event) => event.preventDefault());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden" && state.dirty) save({ keepalive: true });
  });
  window.addEventListener("pagehide", () => state.dirty && save({ keepalive: true }));
  window.addEventListener("beforeunload", (event) => {
    if (state.dirty || state.saving) event.preventDefault(); // a save is on its way: ask before leaving
  });

  $("report-sign").addEventListener("click", () => openSigning("sign"));
  $("report-countersign").addEventListener("click", () => openSigning("countersign"));
  $("report-cosign").addEventListener("click", () => openSigning("cosign"));
  $("report-addendum-form").addEventListener("submit", (event) => {
    event.preventDefault();
    openSigning("addendum");
  });
  $("report-notice-close").addEventListener("click", () => showNotice(""));
  $("sign-form").addEventListener("submit", confirmSigning);
  $("sign-cancel").addEventListener("click", () => dialog.close());
  dialog.addEventListener("cancel", (event) => {
    if (dialog.dataset.busy) event.preventDefault(); // not while the server is signing
  });

  load().catch((error) => {
    panel.dataset.state = "unavailable";
    showSave("error", "");
    showError(t("The report could not be loaded: {reason}", { reason: error.message }));
  });
}

if (panel) start();
