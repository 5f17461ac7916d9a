// Patient, study, acquisition and task details as both viewers show them (labels translated).

import { t, timeLeft } from "./common.js";

const SEX = { M: "male", F: "female", O: "other" };
const AGE_UNITS = { Y: "{n} years", M: "{n} months", W: "{n} weeks", D: "{n} days" };
const PRIORITY = { STAT: "STAT", URGENT: "Urgent", ROUTINE: "Routine" };

/** Labels of the acquisition attributes the server sends (viewer.study_data.ACQUISITION_KEYWORDS). */
const ACQUISITION_LABELS = {
  Modality: "Modality",
  BodyPartExamined: "Body part",
  ProtocolName: "Protocol",
  SeriesDescription: "Series",
  InstitutionName: "Institution",
  StationName: "Station name",
  Manufacturer: "Manufacturer",
  ManufacturerModelName: "Model",
  AcquisitionDate: "Acquisition date",
  AcquisitionTime: "Acquisition time",
  KVP: "Tube voltage (kV)",
  XRayTubeCurrent: "Tube current (mA)",
  ExposureTime: "Exposure time (ms)",
  Exposure: "Exposure (mAs)",
  SliceThickness: "Slice thickness (mm)",
  SpacingBetweenSlices: "Spacing between slices (mm)",
  ConvolutionKernel: "Reconstruction kernel",
  ContrastBolusAgent: "Contrast agent",
  PatientPosition: "Patient position",
  ViewPosition: "View",
  DistanceSourceToDetector: "Source to detector (mm)",
  OperatorsName: "Operator",
  PerformingPhysicianName: "Performing physician",
};

/** The patient's age as text, e.g. "45 years". */
export function ageText(age) {
  return age ? t(AGE_UNITS[age.unit], { n: age.value }) : "";
}

export function patientRows(patient) {
  return [
    [t("Name"), patient.name],
    [t("Patient ID"), patient.id],
    [t("Sex"), SEX[patient.sex] ? t(SEX[patient.sex]) : patient.sex],
    [t("Age"), ageText(patient.age)],
    [t("Birth date"), patient.birth_date],
  ];
}

export function studyRows(study) {
  return [
    [t("Study date"), [study.date, study.time].filter(Boolean).join(" ")],
    [t("Description"), study.description],
    [t("Modalities"), study.modalities.join(", ")],
    [t("Accession number"), study.accession_number],
    [t("Sent by"), document.documentElement.lang === "en" && study.site.name_en ? study.site.name_en : study.site.name],
    [t("Referring physician"), study.referring_physician],
  ];
}

export function acquisitionRows(details) {
  return details.map(({ keyword, value }) => [t(ACQUISITION_LABELS[keyword] ?? keyword), value]);
}

/** Fill a <dl> with the rows that have a value. */
export function fillDetails(list, rows) {
  list.replaceChildren();
  for (const [label, value] of rows) {
    if (value === "" || value === null || value === undefined) continue;
    const term = document.createElement("dt");
    term.textContent = label;
    const description = document.createElement("dd");
    description.textContent = value;
    list.append(term, description);
  }
}

/** The page header: who the patient is and which study this is. */
export function studyHeader({ patient, study }) {
  const sex = SEX[patient.sex] ? t(SEX[patient.sex]) : patient.sex;
  document.getElementById("patient-line").textContent = [patient.name, sex, ageText(patient.age), patient.id && `ID ${patient.id}`]
    .filter(Boolean).join(" · ");
  document.getElementById("study-line").textContent = [study.date, study.modalities.join("/"), study.description]
    .filter(Boolean).join(" · ");
}

/** The reading task's priority, state and deadline with the time left, as nodes for the header. */
function taskLine(task, left) {
  const priority = document.createElement("span");
  priority.className = `priority ${task.priority}`;
  priority.textContent = t(PRIORITY[task.priority] ?? task.priority);
  const due = document.createElement("span");
  const when = new Date(task.due_at).toLocaleString(document.documentElement.lang || undefined, {
    dateStyle: "short", timeStyle: "short", timeZone: document.documentElement.dataset.timeZone || undefined,
  });
  due.textContent = t("due {when}", { when });
  const remaining = document.createElement("span");
  remaining.className = `left ${left.level}`;
  remaining.id = "task-left";
  remaining.textContent = left.text;
  const who = document.createElement("span");
  who.className = "muted";
  who.textContent = task.holder ? t("being read by {name}", { name: task.holder }) : t("not yet claimed");
  const nodes = [priority, due, remaining];
  if (task.state === "open" || task.state === "claimed") nodes.push(who);
  return nodes;
}

/** A URL from a pattern with __NAME__ placeholders, e.g. address(urls.study, { STUDY: uid }). */
export function address(pattern, values) {
  return Object.entries(values).reduce((url, [name, value]) => url.replace(`__${name}__`, encodeURIComponent(value)), pattern);
}

/** Show the reading task in the header, its time left refreshed every minute. */
export function showTask(task) {
  const line = document.getElementById("task-line");
  if (!task) return;
  const render = () => line.replaceChildren(...taskLine(task, timeLeft(task.due_at)));
  line.hidden = false;
  render();
  setInterval(render, 60_000);
}

/** The patient's prior studies, each with "Open" and, when `sideBySide` is given, "Open side by side". */
export function renderPriors(priors, urls, sideBySide = null) {
  const list = document.getElementById("priors");
  list.replaceChildren();
  document.getElementById("priors-empty").hidden = priors.length > 0;
  for (const prior of priors) {
    const item = document.createElement("li");
    const text = document.createElement("div");
    text.textContent = [prior.date, prior.modalities.join("/"), prior.description, prior.site.name].filter(Boolean).join(" · ");
    const open = document.createElement("a");
    open.className = "button small";
    open.href = address(urls.page, { STUDY: prior.study_uid });
    open.target = "_blank";
    open.rel = "noopener";
    open.textContent = t("Open");
    item.append(text, open);
    if (sideBySide && prior.viewer === "image") {
      const side = document.createElement("button");
      side.type = "button";
      side.className = "button small primary";
      side.dataset.prior = prior.study_uid;
      side.textContent = t("Open side by side");
      side.addEventListener("click", () => sideBySide(prior));
      item.append(side);
    }
    list.append(item);
  }
}
