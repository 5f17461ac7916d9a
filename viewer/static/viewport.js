// One image viewport: a stack of frames of one series drawn on a <canvas>, windowed by the server.
//
// Scrolling shows a small preview at once and the full-quality image when it arrives; neighbouring slices
// are prefetched closest first; the whole series' previews load in the background behind a progress bar.
// Window/level changes ask the server for newly rendered pixels (debounced) while an SVG colour-matrix
// filter on the canvas previews the change instantly. Measurements live on a second canvas above.

import { setProgress, t } from "./common.js";
import { address } from "./details.js";
import { FrameLoader, PRIORITY } from "./loader.js";
import { Measurement, describe, drawMeasurements, measureEllipse } from "./measure.js";

const PREVIEW = { size: 256, quality: 60 };
const FULL_QUALITY = 90;
const SIZE_STEPS = [256, 512, 1024, 2048, 4096];
const PREFETCH = 3;
const WINDOW_DEBOUNCE_MS = 150;
const ZOOM_STEP = 1.25;
const WHEEL_STEP = 80;

/** Shared by every viewport, so that both panes respect one concurrency limit on the line. */
export const loader = new FrameLoader(3);

/** A window's numbers as they go into a URL: whole units for wide windows, else two decimals. */
function windowNumber(value, width) {
  return Math.abs(width) >= 20 ? String(Math.round(value)) : value.toFixed(2);
}

export class Viewport {
  /**
   * @param {string} suffix the id suffix of this pane's elements ("" for the main pane)
   * @param {object} urls URL patterns of the data endpoints
   * @param {(what: string) => void} onChange told of "slice", "series", "window" and "measurements" changes
   */
  constructor(suffix, urls, onChange) {
    this.suffix = suffix;
    this.urls = urls;
    this.onChange = onChange;
    const byId = (name) => document.getElementById(name + suffix);
    this.pane = byId("pane");
    this.canvas = byId("viewport");
    this.overlay = byId("overlay");
    this.stage = byId("stage");
    this.slider = byId("slice-slider");
    this.label = byId("slice-label");
    this.message = byId("pane-message");
    this.paneName = byId("pane-name");
    this.loading = byId("series-loading");
    this.progress = byId("series-progress");
    this.cornerSeries = byId("corner-series");
    this.cornerWindow = byId("corner-window");
    this.cornerZoom = byId("corner-zoom");
    this.filter = byId("wl-preview");
    this.group = `pane${suffix}`;
    this.study = null;
    this.series = null;
    this.stack = [];
    this.index = 0;
    this.window = null; // null: each image's own default window
    this.invert = false;
    this.zoom = 1;
    this.pan = { x: 0, y: 0 };
    this.tool = "wl";
    this.shown = null; // {frame, entry, window, invert, quality}
    this.measurements = [];
    this.drawing = null;
    this.drag = null;
    this.wheel = 0;
    this.token = 0;
    this.windowTimer = 0;
    this.sizeTimer = 0;
    this.cineTimer = 0;
    this.bind();
  }

  // --- study, series and slices ------------------------------------------------------------------

  /** Show `study` (the JSON of /viewer/studies/<uid>), starting with its first series of images. */
  setStudy(study, title) {
    this.study = study;
    this.paneName.textContent = title;
    const first = study.series.findIndex((series) => series.instances.some((item) => item.kind === "image"));
    this.showSeries(Math.max(first, 0));
  }

  /** Show series number `index` of the study from its first image. */
  showSeries(index) {
    this.stopCine();
    this.series = this.study.series[index] ?? null;
    this.seriesIndex = index;
    this.stack = [];
    for (const instance of this.series?.instances ?? []) {
      if (instance.kind !== "image") continue;
      const frames = instance.error ? 1 : instance.frames;
      for (let frame = 1; frame <= frames; frame += 1) {
        this.stack.push({ instance, frame, key: `${instance.sop_uid}/${frame}` });
      }
    }
    this.index = 0;
    this.window = null;
    this.slider.max = String(Math.max(this.stack.length, 1));
    this.slider.disabled = this.stack.length < 2;
    this.cornerSeries.textContent = this.series
      ? [this.series.modality, this.series.number !== null ? t("Series {n}", { n: this.series.number }) : "", this.series.description]
        .filter(Boolean).join(" · ")
      : "";
    this.fit();
    if (!this.stack.length) {
      this.showMessage(this.series ? t("This series has no images to show.") : t("This study has no series."));
    }
    this.preloadSeries();
    this.show();
    this.onChange("series");
  }

  /** The stack entry on screen. */
  get entry() {
    return this.stack[this.index] ?? null;
  }

  /** Move to slice `index` (clamped, or wrapped round for cine). */
  go(index, wrap = false) {
    if (!this.stack.length) return;
    const count = this.stack.length;
    const next = wrap ? ((index % count) + count) % count : Math.min(Math.max(index, 0), count - 1);
    if (next === this.index) return;
    this.direction = Math.sign(next - this.index) || 1;
    this.index = next;
    this.drawing = null;
    this.show();
    this.onChange("slice");
  }

  step(delta, wrap = false) {
    this.go(this.index + delta, wrap);
  }

  // --- what to ask the server for ----------------------------------------------------------------

  /** The window in force for `entry`: the one set by the reader, else the image's own. */
  windowFor(entry) {
    return entry?.instance.window ? this.window ?? entry.instance.window : null;
  }

  frameUrl(entry, size, quality) {
    const { instance } = entry;
    const query = new URLSearchParams({ v: instance.version });
    if (this.window && instance.window) {
      query.set("wc", windowNumber(this.window.center, this.window.width));
      query.set("ww", windowNumber(this.window.width, this.window.width));
    }
    if (this.invert) query.set("invert", "1");
    if (size) query.set("size", String(size));
    query.set("q", String(quality));
    return `${address(this.urls.frame, { SOP: instance.sop_uid, FRAME: entry.frame })}?${query}`;
  }

  /** The size step covering the image as drawn now (null: the native size). */
  fullSize(entry) {
    const native = Math.max(entry.instance.rows, entry.instance.columns);
    const matrix = this.matrix(entry);
    const needed = Math.max(entry.instance.columns * matrix.a, entry.instance.rows * matrix.d);
    const step = SIZE_STEPS.find((size) => size >= needed) ?? null;
    return step === null || step >= native ? null : step;
  }

  fullUrl(entry) {
    return this.frameUrl(entry, this.fullSize(entry), FULL_QUALITY);
  }

  previewUrl(entry) {
    const native = Math.max(entry.instance.rows, entry.instance.columns);
    return native > PREVIEW.size ? this.frameUrl(entry, PREVIEW.size, PREVIEW.quality) : null;
  }

  // --- loading and showing -----------------------------------------------------------------------

  /** Show the current slice: the best image in memory now, then better ones as they arrive. */
  show() {
    const entry = this.entry;
    this.updateLabels();
    if (!entry) {
      this.shown = null;
      this.draw();
      return;
    }
    if (entry.instance.error) {
      this.shown = null;
      this.draw();
      this.showMessage(t("This image cannot be shown: {reason}", { reason: entry.instance.error }));
      return;
    }
    this.hideMessage();
    const token = ++this.token;
    loader.drop(`${this.group}/current`);
    const fullUrl = this.fullUrl(entry);
    const look = { window: this.windowFor(entry), invert: this.invert }; // what the URLs ask the server for
    const full = loader.cached(fullUrl);
    if (full) {
      this.display(full, entry, "full", look);
    } else {
      // only the size changes (zoom, resize): keep the full image on screen until the larger one arrives
      if (!this.showsWanted(entry)) this.showPreview(entry, fullUrl, token, look);
      this.loadFull(entry, fullUrl, token, look);
    }
    this.prefetch();
  }

  /** Whether the screen shows `entry` at the wanted window and inversion (at whatever size). */
  showsWanted(entry) {
    const shown = this.shown;
    const wanted = this.windowFor(entry);
    return Boolean(shown && shown.entry === entry && shown.quality === "full" && shown.invert === this.invert
      && shown.window?.center === wanted?.center && shown.window?.width === wanted?.width);
  }

  /** Show the small preview of `entry` now if it is in memory, else as soon as it arrives before the full image. */
  showPreview(entry, fullUrl, token, look) {
    const url = this.previewUrl(entry);
    if (!url) return;
    const preview = loader.cached(url);
    if (preview) {
      this.display(preview, entry, "preview", look);
      return;
    }
    loader.load(url, PRIORITY.current, `${this.group}/current`)
      .then((frame) => frame && token === this.token && this.shown?.frame.url !== fullUrl && this.display(frame, entry, "preview", look))
      .catch(() => {}); // the full image reports the error
  }

  /** Fetch the full-quality image of `entry` (with download progress for a single image) and show it. */
  loadFull(entry, url, token, look) {
    const single = this.stack.length === 1;
    loader.load(url, PRIORITY.currentFull, `${this.group}/current`, single ? (done, total) => this.showProgress(done, total) : null)
      .then((frame) => {
        if (single) this.loading.hidden = true;
        if (frame && token === this.token) this.display(frame, entry, "full", look);
      })
      .catch((error) => token === this.token && this.showMessage(t("This image cannot be shown: {reason}", { reason: error.message })));
  }

  /** Put a frame rendered with `look` (window, inversion) on screen; the canvas element says what it shows. */
  display(frame, entry, quality, look) {
    this.shown = { frame, entry, quality, ...look };
    const shownWindow = this.shown.window;
    this.canvas.dataset.window = shownWindow
      ? `${windowNumber(shownWindow.center, shownWindow.width)},${windowNumber(shownWindow.width, shownWindow.width)}`
      : "";
    this.canvas.dataset.slice = String(this.index + 1);
    this.canvas.dataset.invert = String(this.invert);
    this.canvas.dataset.loaded = quality;
    this.previewWindow();
    this.draw();
  }

  /** Load the full images of the slices around the current one, closest first, in the direction of travel. */
  prefetch() {
    loader.drop(`${this.group}/near`);
    const direction = this.direction || 1;
    for (let distance = 1; distance <= PREFETCH; distance += 1) {
      for (const sign of [direction, -direction]) {
        const entry = this.stack[this.index + sign * distance];
        if (entry && !entry.instance.error) loader.load(this.fullUrl(entry), PRIORITY.neighbour, `${this.group}/near`).catch(() => {});
      }
    }
  }

  /** Load every slice's preview in the background, showing how far the series has come. */
  preloadSeries() {
    loader.drop(`${this.group}/series`);
    const entries = this.stack.filter((entry) => !entry.instance.error && this.previewUrl(entry));
    if (entries.length < 2) {
      this.loading.hidden = true;
      return;
    }
    let done = 0;
    const seriesToken = this.series;
    this.showProgress(0, entries.length);
    const finished = () => {
      if (seriesToken !== this.series) return;
      done += 1;
      this.showProgress(done, entries.length);
      if (done === entries.length) this.loading.hidden = true;
    };
    for (const entry of entries) loader.load(this.previewUrl(entry), PRIORITY.background, `${this.group}/series`).then(finished, finished);
  }

  showProgress(done, total) {
    this.loading.hidden = false;
    setProgress(this.progress, done, total);
  }

  showMessage(text) {
    this.message.textContent = text;
    this.message.hidden = false;
  }

  hideMessage() {
    this.message.hidden = true;
  }

  updateLabels() {
    const count = this.stack.length;
    this.slider.value = String(this.index + 1);
    this.label.textContent = `${count ? this.index + 1 : 0} / ${count}`;
    const current = this.windowFor(this.entry);
    this.cornerWindow.textContent = current
      ? t("W {width} L {center}", { width: windowNumber(current.width, current.width), center: windowNumber(current.center, current.width) })
      : "";
    this.cornerZoom.textContent = t("Zoom {percent}%", { percent: Math.round(this.zoom * 100) });
  }

  // --- drawing -----------------------------------------------------------------------------------

  /** The image → canvas transform (device pixels): x' = a·x + e, y' = d·y + f. */
  matrix(entry = this.entry) {
    const width = this.canvas.width || 1;
    const height = this.canvas.height || 1;
    if (!entry || entry.instance.error) return { a: 1, d: 1, e: 0, f: 0 };
    const { columns, rows, spacing } = entry.instance;
    const aspect = spacing ? spacing.row_mm / spacing.col_mm : 1;
    const fit = Math.min(width / columns, height / (rows * aspect));
    const scale = fit * this.zoom;
    const ratio = window.devicePixelRatio || 1;
    return {
      a: scale,
      d: scale * aspect,
      e: width / 2 + this.pan.x * ratio - (columns * scale) / 2,
      f: height / 2 + this.pan.y * ratio - (rows * scale * aspect) / 2,
    };
  }

  /** The image point under a pointer event. */
  toImage(event) {
    const rect = this.overlay.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    const m = this.matrix();
    return { x: ((event.clientX - rect.left) * ratio - m.e) / m.a, y: ((event.clientY - rect.top) * ratio - m.f) / m.d };
  }

  resize() {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(this.stage.clientWidth * ratio));
    const height = Math.max(1, Math.round(this.stage.clientHeight * ratio));
    if (width === this.canvas.width && height === this.canvas.height) return;
    for (const canvas of [this.canvas, this.overlay]) {
      canvas.width = width;
      canvas.height = height;
    }
    this.draw();
    this.refreshSize();
  }

  draw() {
    const context = this.canvas.getContext("2d");
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.fillStyle = "#000";
    context.fillRect(0, 0, this.canvas.width, this.canvas.height);
    if (this.shown && this.shown.entry === this.entry) {
      const m = this.matrix();
      context.setTransform(m.a, 0, 0, m.d, m.e, m.f);
      context.imageSmoothingEnabled = m.a < 3;
      context.drawImage(this.shown.frame.bitmap, 0, 0, this.entry.instance.columns, this.entry.instance.rows);
    }
    this.drawOverlay();
  }

  drawOverlay() {
    const context = this.overlay.getContext("2d");
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.clearRect(0, 0, this.overlay.width, this.overlay.height);
    const key = this.entry?.key;
    const visible = this.measurements.filter((m) => m.sliceKey === key);
    if (this.drawing) visible.push(this.drawing);
    const m = this.matrix();
    drawMeasurements(context, visible, (p) => ({ x: m.a * p.x + m.e, y: m.d * p.y + m.f }), window.devicePixelRatio || 1);
  }

  // --- window, inversion, zoom -------------------------------------------------------------------

  /** Set the window (null: each image's own) and fetch newly rendered pixels after a short pause. */
  setWindow(value, immediately = true) {
    if (!this.entry?.instance.window) return;
    this.window = value;
    this.previewWindow();
    this.updateLabels();
    clearTimeout(this.windowTimer);
    if (immediately) this.show();
    else this.windowTimer = setTimeout(() => this.show(), WINDOW_DEBOUNCE_MS);
    this.onChange("window");
  }

  toggleInvert() {
    this.invert = !this.invert;
    this.previewWindow();
    this.show();
    this.onChange("window");
  }

  /**
   * Preview the wanted window and inversion on the pixels already shown: a linear transfer function
   * d' = S·d + B on the canvas (exact for a linear VOI, until the server's rendering replaces it).
   */
  previewWindow() {
    const shown = this.shown;
    const target = this.windowFor(this.entry);
    if (!shown) return;
    const mono1 = shown.entry.instance.photometric === "MONOCHROME1";
    const was = shown.invert !== mono1;
    const wanted = this.invert !== mono1;
    let k = 1;
    let b = 0;
    if (shown.window && target) {
      k = shown.window.width / target.width;
      b = (shown.window.center - shown.window.width / 2 - (target.center - target.width / 2)) / target.width;
    }
    const [slope, intercept] = !was && !wanted ? [k, b] : !was && wanted ? [-k, 1 - b] : was && !wanted ? [-k, k + b] : [k, 1 - k - b];
    const identity = Math.abs(slope - 1) < 1e-6 && Math.abs(intercept) < 1e-6;
    for (const channel of this.filter.querySelectorAll("feFuncR, feFuncG, feFuncB")) {
      channel.setAttribute("slope", String(slope));
      channel.setAttribute("intercept", String(intercept));
    }
    this.canvas.style.filter = identity ? "" : `url(#${this.filter.id})`;
  }

  /** Zoom by `factor`, keeping the image point under (`x`, `y`) (CSS pixels from the canvas centre) in place. */
  zoomBy(factor, x = 0, y = 0) {
    const zoom = Math.min(Math.max(this.zoom * factor, 0.1), 40);
    const applied = zoom / this.zoom;
    this.pan = { x: x - (x - this.pan.x) * applied, y: y - (y - this.pan.y) * applied };
    this.zoom = zoom;
    this.updateLabels();
    this.draw();
    this.refreshSize();
  }

  fit() {
    this.zoom = 1;
    this.pan = { x: 0, y: 0 };
    this.canvas.dataset.zoom = "1";
    this.updateLabels();
    this.draw();
  }

  /** Fit, the image's own window, no inversion. */
  reset() {
    this.invert = false;
    this.window = null;
    this.fit();
    this.previewWindow();
    this.show();
    this.onChange("window");
  }

  /** After zooming or resizing, fetch a larger rendering if the image is now drawn bigger. */
  refreshSize() {
    this.canvas.dataset.zoom = String(Math.round(this.zoom * 100) / 100);
    clearTimeout(this.sizeTimer);
    this.sizeTimer = setTimeout(() => {
      const entry = this.entry;
      if (entry && !entry.instance.error && this.shown?.frame.url !== this.fullUrl(entry)) this.show();
    }, 250);
  }

  // --- cine --------------------------------------------------------------------------------------

  get playing() {
    return Boolean(this.cineTimer);
  }

  play(fps) {
    this.stopCine();
    if (this.stack.length < 2) return;
    this.direction = 1;
    this.cineTimer = setInterval(() => this.step(1, true), 1000 / fps);
    this.onChange("cine");
  }

  /** Stop everything this viewport has running or queued (its pane is being closed). */
  close() {
    this.stopCine();
    for (const group of ["current", "near", "series"]) loader.drop(`${this.group}/${group}`);
  }

  stopCine() {
    if (!this.cineTimer) return;
    clearInterval(this.cineTimer);
    this.cineTimer = 0;
    this.onChange("cine");
  }

  // --- measurements ------------------------------------------------------------------------------

  finish(measurement) {
    this.drawing = null;
    measurement.active = false;
    const spacing = this.entry.instance.spacing;
    this.measurements.push(measurement);
    if (measurement.kind === "ellipse") {
      measurement.text = t("measuring…");
      const roi = address(this.urls.roi, { SOP: this.entry.instance.sop_uid, FRAME: this.entry.frame });
      measureEllipse(roi, this.entry.instance.version, measurement)
        .then((text) => { measurement.text = text; })
        .catch((error) => { measurement.text = t("ROI not measured: {reason}", { reason: error.message }); })
        .finally(() => { this.drawOverlay(); this.onChange("measurements"); });
    } else {
      measurement.text = describe(measurement, spacing);
    }
    this.drawOverlay();
    this.onChange("measurements");
  }

  remove(measurement) {
    this.measurements = this.measurements.filter((m) => m !== measurement);
    this.drawOverlay();
    this.onChange("measurements");
  }

  /** Esc: drop the measurement being drawn. */
  cancelDrawing() {
    this.drawing = null;
    this.drawOverlay();
  }

  /** Go to the slice a measurement was made on. */
  goTo(measurement) {
    const index = this.stack.findIndex((entry) => entry.key === measurement.sliceKey);
    if (index >= 0) this.go(index);
  }

  // --- the mouse, the wheel and the slider -------------------------------------------------------

  bind() {
    new ResizeObserver(() => this.resize()).observe(this.stage);
    this.slider.addEventListener("input", () => this.go(Number(this.slider.value) - 1));
    document.getElementById(`slice-prev${this.suffix}`).addEventListener("click", () => this.step(-1));
    document.getElementById(`slice-next${this.suffix}`).addEventListener("click", () => this.step(1));
    this.overlay.addEventListener("contextmenu", (event) => event.preventDefault());
    this.overlay.addEventListener("wheel", (event) => this.onWheel(event), { passive: false });
    this.overlay.addEventListener("pointerdown", (event) => this.onPointerDown(event));
    this.overlay.addEventListener("pointermove", (event) => this.onPointerMove(event));
    this.overlay.addEventListener("pointerup", (event) => this.onPointerUp(event));
    this.overlay.addEventListener("pointercancel", () => { this.drag = null; });
    this.resize();
  }

  onWheel(event) {
    event.preventDefault();
    const delta = event.deltaY * (event.deltaMode === 1 ? 33 : event.deltaMode === 2 ? 400 : 1);
    if (event.ctrlKey) {
      const rect = this.overlay.getBoundingClientRect();
      this.zoomBy(delta < 0 ? ZOOM_STEP : 1 / ZOOM_STEP, event.clientX - rect.left - rect.width / 2, event.clientY - rect.top - rect.height / 2);
      return;
    }
    this.wheel += delta;
    const steps = Math.trunc(this.wheel / WHEEL_STEP) || Math.sign(this.wheel) * (Math.abs(delta) >= WHEEL_STEP / 2 ? 1 : 0);
    if (steps) {
      this.wheel = 0;
      this.step(steps);
    }
  }

  onPointerDown(event) {
    this.overlay.focus();
    if (!this.entry || this.entry.instance.error) return;
    const mode = event.button === 2 ? "wl" : event.button === 1 ? "pan" : this.tool;
    event.preventDefault();
    if (mode === "wl" || mode === "pan") {
      const start = this.windowFor(this.entry);
      if (mode === "wl" && !start) return;
      this.drag = { mode, x: event.clientX, y: event.clientY, window: start, pan: { ...this.pan } };
      this.overlay.setPointerCapture(event.pointerId);
      return;
    }
    const point = this.toImage(event);
    if (mode === "angle" && this.drawing?.kind === "angle") {
      if (this.drawing.points.length === 2) this.drawing.points.push({ ...point });
      else this.finish(this.drawing);
      this.drawOverlay();
      return;
    }
    this.drawing = new Measurement(mode, [point, { ...point }], this.entry.key, this.index + 1);
    this.drawing.active = true;
    if (mode !== "angle") this.overlay.setPointerCapture(event.pointerId);
    this.drawOverlay();
  }

  onPointerMove(event) {
    if (this.drag) {
      const dx = event.clientX - this.drag.x;
      const dy = event.clientY - this.drag.y;
      if (this.drag.mode === "pan") {
        this.pan = { x: this.drag.pan.x + dx, y: this.drag.pan.y + dy };
        this.draw();
      } else {
        const start = this.drag.window;
        const rate = Math.max(start.width, 10) / 200;
        this.setWindow({ center: start.center + dy * rate, width: Math.max(1, start.width + dx * rate) }, false);
      }
      return;
    }
    if (this.drawing) {
      this.drawing.points[this.drawing.points.length - 1] = this.toImage(event);
      this.drawOverlay();
    }
  }

  onPointerUp() {
    if (this.drag) {
      this.drag = null;
      return;
    }
    const drawing = this.drawing;
    if (!drawing || drawing.kind === "angle") return;
    const [a, b] = drawing.points;
    const m = this.matrix();
    const screenLength = Math.hypot((b.x - a.x) * m.a, (b.y - a.y) * m.d);
    if (screenLength < 4) this.cancelDrawing();
    else this.finish(drawing);
  }
}
