// The study viewer page: loads the study, lays out the viewports (a second one for a prior study side by
// side), and wires the toolbar, the series list, the keyboard, the details panel and the priors.

import { api, t } from "./common.js";
import {
  acquisitionRows, address, fillDetails, patientRows, renderPriors, showTask, studyHeader, studyRows,
} from "./details.js";
import { Viewport } from "./viewport.js";

const root = document.getElementById("viewer");
const urls = JSON.parse(document.getElementById("viewer-urls").textContent);
const toolButtons = [...document.querySelectorAll("[data-tool]")];
const presetButtons = [...document.querySelectorAll("[data-preset]")];
const KEY_TOOLS = { w: "wl", p: "pan", l: "length", a: "angle", e: "ellipse" };

const state = { viewports: [], active: null, tool: "wl", main: null };

// --- viewports -----------------------------------------------------------------------------------

function addViewport(suffix, study, title) {
  const viewport = new Viewport(suffix, urls, (what) => changed(viewport, what));
  viewport.tool = state.tool;
  viewport.pane.addEventListener("pointerdown", () => activate(viewport));
  viewport.overlay.addEventListener("focus", () => activate(viewport));
  state.viewports.push(viewport);
  viewport.setStudy(study, title);
  activate(viewport);
  return viewport;
}

function activate(viewport) {
  if (state.active === viewport) return;
  state.active = viewport;
  for (const each of state.viewports) each.pane.classList.toggle("active", each === viewport);
  renderSeriesList();
  renderSide();
  renderPresets();
  renderCine();
}

function changed(viewport, what) {
  if (what === "measurements") renderMeasurements();
  if (viewport !== state.active) return;
  if (what === "series") {
    renderSeriesList();
    renderSide();
    renderPresets();
  }
  if (what === "window") renderPresets();
  if (what === "cine") renderCine();
}

async function openSideBySide(prior) {
  closeSecond();
  const template = document.getElementById("pane-template");
  document.getElementById("panes").append(template.content.cloneNode(true));
  root.classList.add("two-panes");
  document.getElementById("close-pane-2").addEventListener("click", closeSecond);
  const title = t("Prior: {date} {description}", { date: prior.date, description: prior.description });
  try {
    addViewport("-2", await api("GET", address(urls.study, { STUDY: prior.study_uid })), title);
  } catch (error) {
    closeSecond();
    alert(t("The prior study could not be opened: {reason}", { reason: error.message }));
  }
}

function closeSecond() {
  const second = state.viewports.find((viewport) => viewport.suffix === "-2");
  document.getElementById("pane-2")?.remove();
  root.classList.remove("two-panes");
  if (!second) return;
  second.close();
  state.viewports = state.viewports.filter((viewport) => viewport !== second);
  activate(state.main);
  renderMeasurements();
}

// --- the panels ----------------------------------------------------------------------------------

function renderSeriesList() {
  const viewport = state.active;
  const list = document.getElementById("series-list");
  list.replaceChildren();
  viewport.study.series.forEach((series, index) => {
    const images = series.instances.filter((item) => item.kind === "image");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "series-thumb";
    button.dataset.series = String(index);
    button.setAttribute("aria-pressed", String(index === viewport.seriesIndex));
    const middle = images[Math.floor(images.length / 2)];
    if (middle && !middle.error) {
      const image = document.createElement("img");
      image.alt = "";
      image.loading = "lazy";
      image.src = `${address(urls.frame, { SOP: middle.sop_uid, FRAME: 1 })}?v=${middle.version}&size=96&q=70`;
      button.append(image);
    }
    const text = document.createElement("span");
    const name = [series.modality, series.description || (series.number !== null ? t("Series {n}", { n: series.number }) : "")];
    text.textContent = `${name.filter(Boolean).join(" · ")} — ${t("{n} images", { n: images.length })}`;
    button.append(text);
    button.addEventListener("click", () => viewport.showSeries(index));
    list.append(button);
  });
}

function renderSide() {
  const viewport = state.active;
  const study = viewport.study;
  fillDetails(document.getElementById("patient-details"), patientRows(study.patient));
  fillDetails(document.getElementById("study-details"), studyRows(study.study));
  fillDetails(document.getElementById("acquisition-details"), acquisitionRows(viewport.series?.acquisition ?? []));
}

function renderPresets() {
  const viewport = state.active;
  const entry = viewport.entry;
  const isCt = (entry?.instance.modality || viewport.series?.modality) === "CT";
  const windowed = Boolean(entry?.instance.window);
  for (const button of presetButtons) {
    button.hidden = button.classList.contains("ct-only") && !isCt;
    button.disabled = !windowed;
    const active = button.dataset.preset === "auto"
      ? viewport.window === null
      : viewport.window?.center === Number(button.dataset.center) && viewport.window?.width === Number(button.dataset.width);
    button.setAttribute("aria-pressed", String(active));
  }
  document.getElementById("invert").setAttribute("aria-pressed", String(viewport.invert));
}

function renderCine() {
  const button = document.getElementById("cine-play");
  const playing = state.active.playing;
  button.setAttribute("aria-pressed", String(playing));
  button.textContent = playing ? `⏸ ${t("Pause")}` : `▶ ${t("Play")}`;
}

function renderMeasurements() {
  const list = document.getElementById("measurements");
  list.replaceChildren();
  const two = state.viewports.length > 1;
  for (const viewport of state.viewports) {
    for (const measurement of viewport.measurements) {
      const item = document.createElement("li");
      const go = document.createElement("button");
      go.type = "button";
      go.className = "link";
      const where = t("image {n}", { n: measurement.sliceNumber });
      const pane = two ? `${viewport.suffix ? t("prior") : t("current")} · ` : "";
      go.textContent = `${measurement.text} — ${pane}${where}`;
      go.dataset.measurement = String(measurement.id);
      go.addEventListener("click", () => { activate(viewport); viewport.goTo(measurement); });
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "button small";
      remove.textContent = t("Delete");
      remove.addEventListener("click", () => viewport.remove(measurement));
      item.append(go, remove);
      list.append(item);
    }
  }
  document.getElementById("measurements-empty").hidden = list.children.length > 0;
}

// --- the toolbar and the keyboard ----------------------------------------------------------------

function chooseTool(tool) {
  state.tool = tool;
  for (const viewport of state.viewports) {
    viewport.tool = tool;
    viewport.cancelDrawing();
  }
  for (const button of toolButtons) button.setAttribute("aria-pressed", String(button.dataset.tool === tool));
}

function applyPreset(button) {
  if (button.hidden || button.disabled) return;
  const viewport = state.active;
  viewport.setWindow(button.dataset.preset === "auto" ? null : { center: Number(button.dataset.center), width: Number(button.dataset.width) });
}

function toggleCine() {
  const viewport = state.active;
  if (viewport.playing) viewport.stopCine();
  else viewport.play(Number(document.getElementById("cine-fps").value));
}

function bindToolbar() {
  for (const button of toolButtons) button.addEventListener("click", () => chooseTool(button.dataset.tool));
  for (const button of presetButtons) button.addEventListener("click", () => applyPreset(button));
  document.getElementById("invert").addEventListener("click", () => state.active.toggleInvert());
  document.getElementById("zoom-in").addEventListener("click", () => state.active.zoomBy(1.25));
  document.getElementById("zoom-out").addEventListener("click", () => state.active.zoomBy(0.8));
  document.getElementById("fit").addEventListener("click", () => state.active.fit());
  document.getElementById("reset").addEventListener("click", () => state.active.reset());
  document.getElementById("cine-play").addEventListener("click", toggleCine);
  document.getElementById("cine-fps").addEventListener("change", (event) => {
    if (state.active.playing) state.active.play(Number(event.target.value));
  });
  document.addEventListener("keydown", onKey);
}

function onKey(event) {
  const target = event.target;
  if (event.altKey || event.metaKey || target.closest?.("input, select, textarea")) return;
  const viewport = state.active;
  if (!viewport) return;
  const key = event.key;
  const actions = {
    ArrowUp: () => viewport.step(-1),
    ArrowDown: () => viewport.step(1),
    PageUp: () => viewport.step(-10),
    PageDown: () => viewport.step(10),
    Home: () => viewport.go(0),
    End: () => viewport.go(viewport.stack.length - 1),
    "+": () => viewport.zoomBy(1.25),
    "=": () => viewport.zoomBy(1.25),
    "-": () => viewport.zoomBy(0.8),
    " ": toggleCine,
    Escape: () => viewport.cancelDrawing(),
    Delete: () => viewport.measurements.length && viewport.remove(viewport.measurements.at(-1)),
    i: () => viewport.toggleInvert(),
    f: () => viewport.fit(),
    r: () => viewport.reset(),
  };
  const lower = key.length === 1 ? key.toLowerCase() : key;
  let action = event.ctrlKey ? null : actions[lower] ?? (KEY_TOOLS[lower] && (() => chooseTool(KEY_TOOLS[lower])));
  if (!action && !event.ctrlKey && /^[1-6]$/.test(key)) action = () => applyPreset(presetButtons[Number(key) - 1]);
  if (!action) return;
  if (target.tagName === "BUTTON" && (key === " " || key === "Enter")) return; // let buttons be pressed
  event.preventDefault();
  action();
}

// --- start ---------------------------------------------------------------------------------------

async function start() {
  bindToolbar();
  let study;
  try {
    study = await api("GET", address(urls.study, { STUDY: root.dataset.study }));
  } catch (error) {
    document.getElementById("patient-line").textContent = t("The study could not be loaded: {reason}", { reason: error.message });
    return;
  }
  studyHeader(study);
  showTask(study.task);
  renderPriors(study.priors, urls, openSideBySide);
  state.main = addViewport("", study, t("Current study"));
  renderMeasurements();
}

start();
