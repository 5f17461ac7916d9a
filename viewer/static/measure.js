// Measurements on an image, kept in image pixel coordinates (x along columns, y along rows; pixel (r, c)
// covers [c, c+1) × [r, r+1)) so zooming and panning never change them: length, angle and ellipse ROI.

import { api, t } from "./common.js";

/** The spacing label shown with a length: which attribute gave the millimetres (PS3.3 10.7.1.1). */
export function spacingLabel(spacing) {
  if (!spacing) return t("no pixel spacing: in pixels");
  return spacing.source === "ImagerPixelSpacing" ? t("ImagerPixelSpacing (at detector)") : t("PixelSpacing");
}

/** A vector from `a` to `b` in millimetres (or pixels without spacing). */
function physical(a, b, spacing) {
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  return spacing ? { x: dx * spacing.col_mm, y: dy * spacing.row_mm } : { x: dx, y: dy };
}

/** The distance between two image points in mm (or pixels when the image has no spacing). */
export function lengthOf(a, b, spacing) {
  const v = physical(a, b, spacing);
  return Math.hypot(v.x, v.y);
}

/** The angle at `vertex` between the arms to `a` and `c`, in degrees, measured in physical space. */
export function angleOf(a, vertex, c, spacing) {
  const u = physical(vertex, a, spacing);
  const w = physical(vertex, c, spacing);
  const norms = Math.hypot(u.x, u.y) * Math.hypot(w.x, w.y);
  if (!norms) return 0;
  const cos = Math.min(1, Math.max(-1, (u.x * w.x + u.y * w.y) / norms));
  return (Math.acos(cos) * 180) / Math.PI;
}

const formatter = (digits) => new Intl.NumberFormat(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
const one = formatter(1);
const zero = formatter(0);

/** One measurement: its kind, image points, the slice it belongs to and its text. */
export class Measurement {
  constructor(kind, points, sliceKey, sliceNumber) {
    this.kind = kind;
    this.points = points;
    this.sliceKey = sliceKey;
    this.sliceNumber = sliceNumber;
    this.text = "";
    this.id = Measurement.next++;
  }
}
Measurement.next = 1;

/** The text of a finished length or angle measurement. */
export function describe(measurement, spacing) {
  const [a, b, c] = measurement.points;
  if (measurement.kind === "length") {
    const value = lengthOf(a, b, spacing);
    return spacing
      ? t("Length {value} mm ({source})", { value: one.format(value), source: spacingLabel(spacing) })
      : t("Length {value} px ({source})", { value: one.format(value), source: spacingLabel(spacing) });
  }
  return t("Angle {value}°", { value: one.format(angleOf(a, b, c, spacing)) });
}

/** The ellipse's centre and radii in image coordinates from two opposite corners of its bounding box. */
export function ellipseOf(a, b) {
  return { cx: (a.x + b.x) / 2, cy: (a.y + b.y) / 2, rx: Math.abs(b.x - a.x) / 2, ry: Math.abs(b.y - a.y) / 2 };
}

/** Ask the server for the ellipse's figures on the instance `version` and return the measurement's text. */
export async function measureEllipse(roiUrl, version, measurement) {
  const { cx, cy, rx, ry } = ellipseOf(...measurement.points);
  const query = new URLSearchParams({ v: version, cx: cx.toFixed(2), cy: cy.toFixed(2), rx: rx.toFixed(2), ry: ry.toFixed(2) });
  const stats = await api("GET", `${roiUrl}?${query}`);
  const unit = stats.unit ? ` ${stats.unit}` : "";
  const area = stats.area_mm2 === null
    ? t("area {value} px", { value: zero.format(stats.pixels) })
    : t("area {value} mm²", { value: one.format(stats.area_mm2) });
  return t("ROI mean {mean} ± {sd}{unit}, {area}", { mean: one.format(stats.mean), sd: one.format(stats.sd), unit, area });
}

/** Draw `measurements` (and the one being drawn) on the overlay with `toScreen` mapping image → canvas pixels. */
export function drawMeasurements(context, measurements, toScreen, scale) {
  context.save();
  context.lineWidth = 2 * scale;
  context.font = `${Math.round(15 * scale)}px system-ui, sans-serif`;
  context.textBaseline = "bottom";
  for (const measurement of measurements) {
    const points = measurement.points.map(toScreen);
    context.strokeStyle = measurement.active ? "#ffbf00" : "#4dd0ff";
    context.fillStyle = context.strokeStyle;
    context.beginPath();
    if (measurement.kind === "ellipse" && points.length === 2) {
      const [a, b] = points;
      context.ellipse((a.x + b.x) / 2, (a.y + b.y) / 2, Math.abs(b.x - a.x) / 2, Math.abs(b.y - a.y) / 2, 0, 0, 2 * Math.PI);
    } else {
      points.forEach((point, index) => (index ? context.lineTo(point.x, point.y) : context.moveTo(point.x, point.y)));
    }
    context.stroke();
    points.forEach((point) => context.fillRect(point.x - 3 * scale, point.y - 3 * scale, 6 * scale, 6 * scale));
    if (measurement.text) {
      const anchor = points[points.length - 1];
      // Keep the label on the canvas: write it to the left of the point when it would run off the right edge.
      const overflows = anchor.x + 8 * scale + context.measureText(measurement.text).width > context.canvas.width;
      const x = overflows ? anchor.x - 8 * scale : anchor.x + 8 * scale;
      context.textAlign = overflows ? "right" : "left";
      context.lineWidth = 4 * scale;
      context.strokeStyle = "rgba(0,0,0,.8)";
      context.strokeText(measurement.text, x, anchor.y - 6 * scale);
      context.fillText(measurement.text, x, anchor.y - 6 * scale);
      context.lineWidth = 2 * scale;
    }
  }
  context.restore();
}
