// The 12-lead ECG on millimetre paper: 3 rows × 4 columns of 2.5 s (I aVR V1 V4 / II aVL V2 V5 /
// III aVF V3 V6) and a full-length lead II rhythm strip, drawn as SVG in millimetres at the chosen paper
// speed (mm/s) and gain (mm/mV), with a 1 mV calibration pulse per row and click-drag calipers.

import { api, t } from "./common.js";
import {
  acquisitionRows, address, fillDetails, patientRows, renderPriors, showTask, studyHeader, studyRows,
} from "./details.js";

const SVG = "http://www.w3.org/2000/svg";
const LAYOUT = [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]];
const RHYTHM_LEAD = "II";
const COLUMN_SECONDS = 2.5;
const RIGHT_MM = 4;
const TOP_MM = 4;
const POLL_MS = 15_000;
const POLLS = 40;

const root = document.getElementById("viewer");
const urls = JSON.parse(document.getElementById("viewer-urls").textContent);
const svg = document.getElementById("ecg-svg");
const paper = document.getElementById("ecg-paper");
const speedSelect = document.getElementById("ecg-speed");
const gainSelect = document.getElementById("ecg-gain");
const caliperText = document.getElementById("ecg-caliper");

const state = { ecg: null, speed: 25, gain: 10, caliper: null, pxPerMm: 4 };

const number = (digits) => new Intl.NumberFormat(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
const whole = number(0);
const tenth = number(1);
const hundredth = number(2);

function element(name, attributes = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  parent?.append(node);
  return node;
}

// --- the paper -----------------------------------------------------------------------------------

/** The room before the tracings: the calibration pulse (200 ms) and a margin, in mm. */
function leftMm(speed) {
  return 0.2 * speed + 7;
}

/** Sizes of the layout in mm at the current speed and gain. */
function geometry() {
  const columnMm = COLUMN_SECONDS * state.speed;
  const rowMm = Math.max(20, 4 * state.gain);
  const rows = LAYOUT.length + 1;
  const left = leftMm(state.speed);
  return { columnMm, rowMm, left, width: left + 4 * columnMm + RIGHT_MM, height: TOP_MM + rows * rowMm + 2 };
}

/** The 1 mm and 5 mm grid as two paths (pink and red, like ECG paper). */
function drawGrid(group, width, height) {
  let small = "";
  let large = "";
  for (let x = 0; x <= width; x += 1) (x % 5 ? (small += `M${x} 0V${height}`) : (large += `M${x} 0V${height}`));
  for (let y = 0; y <= height; y += 1) (y % 5 ? (small += `M0 ${y}H${width}`) : (large += `M0 ${y}H${width}`));
  element("path", { d: small, class: "grid-small" }, group);
  element("path", { d: large, class: "grid-large" }, group);
}

/** A 1 mV, 200 ms calibration pulse just before the tracings, on the baseline `y`. */
function drawCalibration(group, y) {
  const width = 0.2 * state.speed;
  const x = leftMm(state.speed) - 3 - width;
  const height = state.gain;
  element("path", { d: `M${x - 2} ${y}H${x}V${y - height}H${x + width}V${y}H${x + width + 1.5}`, class: "calibration" }, group);
}

/** Lead `name` from `start` s for `seconds`, drawn from (x0, baseline). */
function trace(name, start, seconds, x0, baseline) {
  const samples = state.ecg.samples[name];
  const rate = state.ecg.sampling_frequency;
  const first = Math.round(start * rate);
  const last = Math.min(samples.length, Math.round((start + seconds) * rate));
  const mmPerSample = state.speed / rate;
  const mmPerMicrovolt = state.gain / 1000;
  const points = [];
  for (let i = first; i < last; i += 1) {
    points.push(`${(x0 + (i - first) * mmPerSample).toFixed(2)} ${(baseline - samples[i] * mmPerMicrovolt).toFixed(2)}`);
  }
  return points.length ? `M${points.join("L")}` : "";
}

function label(group, text, x, y) {
  const node = element("text", { x, y, class: "lead-label" }, group);
  node.textContent = text;
}

/** Draw the whole sheet for the current speed and gain. */
function drawPaper() {
  const { columnMm, rowMm, left, width, height } = geometry();
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", String(Math.round(width * state.pxPerMm)));
  svg.setAttribute("height", String(Math.round(height * state.pxPerMm)));
  svg.dataset.speed = String(state.speed);
  svg.dataset.gain = String(state.gain);
  drawGrid(element("g", { class: "grid" }, svg), width, height);
  const tracing = element("g", { class: "tracing" }, svg);
  const labels = element("g", { class: "labels" }, svg);
  LAYOUT.forEach((leads, row) => {
    const baseline = TOP_MM + row * rowMm + rowMm * 0.6;
    drawCalibration(tracing, baseline);
    leads.forEach((name, column) => {
      const x0 = left + column * columnMm;
      element("path", { d: trace(name, column * COLUMN_SECONDS, COLUMN_SECONDS, x0, baseline), "data-lead": name }, tracing);
      if (column) element("path", { d: `M${x0} ${baseline - 3}V${baseline + 3}`, class: "separator" }, tracing);
      label(labels, name, x0 + 1.5, TOP_MM + row * rowMm + 4);
    });
  });
  const rhythmBaseline = TOP_MM + LAYOUT.length * rowMm + rowMm * 0.6;
  drawCalibration(tracing, rhythmBaseline);
  const seconds = Math.min(state.ecg.duration_s, 4 * COLUMN_SECONDS);
  element("path", { d: trace(RHYTHM_LEAD, 0, seconds, left, rhythmBaseline), "data-lead": `${RHYTHM_LEAD}-rhythm` }, tracing);
  label(labels, `${RHYTHM_LEAD} ${t("rhythm")}`, left + 1.5, TOP_MM + LAYOUT.length * rowMm + 4);
  const scale = element("text", { x: width - RIGHT_MM, y: height - 1.5, class: "scale-label", "text-anchor": "end" }, labels);
  scale.textContent = `${state.speed} mm/s · ${state.gain} mm/mV · ${whole.format(state.ecg.sampling_frequency)} Hz`;
  state.caliperGroup = element("g", { class: "caliper" }, svg);
  state.caliper = null;
  showCaliper();
}

/** Fit 25 mm/s to the width of the paper area; 50 mm/s is twice as wide and scrolls. */
function fitToWidth() {
  const base = leftMm(25) + 4 * COLUMN_SECONDS * 25 + RIGHT_MM;
  state.pxPerMm = Math.max(2, (paper.clientWidth - 8) / base);
}

// --- calipers ------------------------------------------------------------------------------------

/** The pointer position in paper millimetres. */
function toMm(event) {
  const point = svg.createSVGPoint();
  point.x = event.clientX;
  point.y = event.clientY;
  const local = point.matrixTransform(svg.getScreenCTM().inverse());
  return { x: local.x, y: local.y };
}

function showCaliper() {
  state.caliperGroup.replaceChildren();
  const caliper = state.caliper;
  if (!caliper) {
    caliperText.textContent = t("drag across the tracing to measure time and amplitude");
    delete svg.dataset.caliperMs;
    return;
  }
  const { a, b } = caliper;
  const ms = (Math.abs(b.x - a.x) / state.speed) * 1000;
  const mv = (a.y - b.y) / state.gain;
  element("path", { d: `M${a.x} ${a.y - 4}V${a.y + 4}M${b.x} ${b.y - 4}V${b.y + 4}M${a.x} ${a.y}L${b.x} ${b.y}` }, state.caliperGroup);
  const parts = [t("Δt {ms} ms", { ms: whole.format(ms) }), t("Δ amplitude {mv} mV", { mv: hundredth.format(mv) })];
  if (ms >= 200) parts.push(t("{bpm} beats/min if this is one RR interval", { bpm: tenth.format(60000 / ms) }));
  const text = parts.join(" · ");
  const note = element("text", { x: Math.max(a.x, b.x) + 1.5, y: Math.min(a.y, b.y) - 1.5, class: "caliper-label" }, state.caliperGroup);
  note.textContent = `${whole.format(ms)} ms, ${hundredth.format(mv)} mV`;
  caliperText.textContent = text;
  svg.dataset.caliperMs = ms.toFixed(1);
  svg.dataset.caliperMv = mv.toFixed(3);
}

function bindCalipers() {
  svg.addEventListener("pointerdown", (event) => {
    if (!state.ecg || event.button !== 0) return;
    event.preventDefault();
    const point = toMm(event);
    state.caliper = { a: point, b: { ...point }, dragging: true };
    svg.setPointerCapture(event.pointerId);
    showCaliper();
  });
  svg.addEventListener("pointermove", (event) => {
    if (!state.caliper?.dragging) return;
    state.caliper.b = toMm(event);
    showCaliper();
  });
  svg.addEventListener("pointerup", () => {
    if (state.caliper) state.caliper.dragging = false;
  });
  document.getElementById("ecg-caliper-clear").addEventListener("click", () => {
    state.caliper = null;
    showCaliper();
  });
}

// --- measurements --------------------------------------------------------------------------------

/** [label, device key, Telerad key, unit] in the order readers report them. */
const MEASUREMENT_ROWS = [
  ["Heart rate", "hr", "heart_rate", "/min"],
  ["RR interval", "rr", "rr_ms", "ms"],
  ["PR interval", "pr", "pr_ms", "ms"],
  ["QRS duration", "qrs", "qrs_ms", "ms"],
  ["QT interval", "qt", "qt_ms", "ms"],
  ["QTc (device's formula)", "qtc", null, "ms"],
  ["QTc Bazett", null, "qtc_bazett_ms", "ms"],
  ["QTc Fridericia", null, "qtc_fridericia_ms", "ms"],
  ["P axis", "p_axis", "p_axis", "°"],
  ["QRS axis", "qrs_axis", "qrs_axis", "°"],
  ["T axis", "t_axis", "t_axis", "°"],
];

function deviceValue(device, key) {
  if (!key) return null;
  const found = device.values[key];
  if (found) return found.value;
  if (key === "hr" && device.values.rr) return 60000 / device.values.rr.value;
  return null;
}

function cell(tag, text, className = "") {
  const node = document.createElement(tag);
  node.textContent = text;
  if (className) node.className = className;
  return node;
}

function renderMeasurements(payload) {
  const computing = payload.computed_status === "computing";
  const failed = payload.computed_status === "failed";
  const table = document.createElement("table");
  table.className = "list measurements-table";
  const head = document.createElement("tr");
  head.append(cell("th", ""), cell("th", t("Device")), cell("th", t("Computed by Telerad")));
  table.createTHead().append(head);
  const body = table.createTBody();
  MEASUREMENT_ROWS.forEach(([name, deviceKey, ownKey, unit], index) => {
    const row = document.createElement("tr");
    row.dataset.measurement = ownKey ?? deviceKey;
    const device = deviceValue(payload.device, deviceKey);
    row.append(cell("th", `${t(name)} (${unit})`), cell("td", device === null ? "—" : whole.format(device), "device"));
    if (computing) {
      if (index === 0) {
        const waiting = cell("td", t("being computed…"), "computing");
        waiting.rowSpan = MEASUREMENT_ROWS.length;
        row.append(waiting);
      }
    } else {
      const own = ownKey ? payload.computed?.[ownKey] : null;
      row.append(cell("td", own === null || own === undefined ? "—" : whole.format(own), "computed"));
    }
    body.append(row);
  });
  const box = document.getElementById("ecg-measurements");
  box.dataset.computed = payload.computed_status;
  const note = document.createElement("p");
  note.className = "muted";
  if (computing) note.textContent = t("Telerad measures every ECG after it arrives; its figures appear here by themselves.");
  else if (failed) note.textContent = t("Telerad could not measure this ECG: {reason}", { reason: payload.computed.error });
  else note.textContent = t("Telerad's figures come from a median beat of all twelve leads ({beats} beats).", { beats: payload.computed.beats_in_median });
  box.replaceChildren(table, note);
  const statements = document.getElementById("ecg-statements");
  statements.replaceChildren(...payload.device.texts.map((text) => cell("li", text)));
}

/** Ask again until the worker has measured the ECG (measurements only: the samples are already here). */
function pollMeasurements(url, remaining) {
  if (!remaining) return;
  setTimeout(async () => {
    try {
      const payload = await api("GET", `${url}?samples=0`);
      renderMeasurements(payload);
      if (payload.computed_status === "computing") pollMeasurements(url, remaining - 1);
    } catch {
      pollMeasurements(url, remaining - 1);
    }
  }, POLL_MS);
}

// --- start ---------------------------------------------------------------------------------------

async function start() {
  bindCalipers();
  const message = document.getElementById("ecg-message");
  let study;
  try {
    study = await api("GET", address(urls.study, { STUDY: root.dataset.study }));
  } catch (error) {
    message.textContent = t("The study could not be loaded: {reason}", { reason: error.message });
    return;
  }
  studyHeader(study);
  showTask(study.task);
  renderPriors(study.priors, urls);
  fillDetails(document.getElementById("patient-details"), patientRows(study.patient));
  fillDetails(document.getElementById("study-details"), studyRows(study.study));
  const series = study.series.find((each) => each.instances.some((item) => item.kind === "waveform"));
  fillDetails(document.getElementById("acquisition-details"), acquisitionRows(series?.acquisition ?? []));
  const instance = series?.instances.find((item) => item.kind === "waveform");
  if (!instance) {
    message.textContent = t("This study holds no ECG waveform.");
    return;
  }
  const url = address(urls.ecg, { SOP: instance.sop_uid });
  try {
    state.ecg = await api("GET", url);
  } catch (error) {
    message.textContent = t("The ECG cannot be shown: {reason}", { reason: error.message });
    return;
  }
  message.hidden = true;
  fitToWidth();
  drawPaper();
  renderMeasurements(state.ecg);
  if (state.ecg.computed_status === "computing") pollMeasurements(url, POLLS);
  speedSelect.addEventListener("change", () => { state.speed = Number(speedSelect.value); drawPaper(); });
  gainSelect.addEventListener("change", () => { state.gain = Number(gainSelect.value); drawPaper(); });
  new ResizeObserver(() => {
    const before = state.pxPerMm;
    fitToWidth();
    if (Math.abs(before - state.pxPerMm) > 0.05) drawPaper();
  }).observe(paper);
}

start();
