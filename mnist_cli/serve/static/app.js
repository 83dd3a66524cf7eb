// The page of `mnist serve`: plain JavaScript, no library, no build step.
// It draws on the canvas, sends the drawing (grey levels) or an uploaded file to the server,
// and shows what the chosen run (and the one it is compared with) answers.
"use strict";

const INK_WIDTH = 18; // on the 280x280 canvas: about the stroke of an MNIST digit once fitted

const state = {
  runs: [],
  primary: null, // run name
  compare: "", // run name or ""
  strokes: [], // each a list of [x, y] points in canvas pixels
  lastInput: null, // {kind: "drawing"} or {kind: "upload", file}
  inFlight: false,
  pending: false,
  selectedCell: null,
  epoch: null, // the epoch replayed (its snapshot), or null: the newest weights
  run: null, // the primary run as GET /api/runs/{run} describes it
  live: null, // the EventSource following a run still training
  training: null, // the newest training started from the page (GET /api/training)
};

const canvas = document.getElementById("canvas");
const hint = document.getElementById("hint");
const DRAWING_HINT = hint.textContent;
const context = canvas.getContext("2d", { willReadFrequently: true });

// ---------------------------------------------------------------------------------------
// Talking to the server: every answer is JSON, errors as {"error": "..."}.

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = { error: `the server answered ${response.status} without JSON` };
  }
  if (!response.ok) {
    throw new Error(body && body.error ? body.error : `HTTP ${response.status}`);
  }
  return body;
}

function runPath(name, rest) {
  return `/api/runs/${encodeURIComponent(name)}${rest || ""}`;
}

function atEpoch(path) {
  // The primary run's requests name the replayed epoch; none: the newest weights.
  if (state.epoch == null) return path;
  return `${path}${path.includes("?") ? "&" : "?"}epoch=${state.epoch}`;
}

function showMessage(text) {
  const message = document.getElementById("message");
  message.textContent = text || "";
  message.hidden = !text;
}

// ---------------------------------------------------------------------------------------
// Drawing: pointer events cover the mouse, a pen and touch alike.

function clearCanvas() {
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
}

function drawStroke(points) {
  context.strokeStyle = "#000";
  context.fillStyle = "#000";
  context.lineWidth = INK_WIDTH;
  context.lineCap = "round";
  context.lineJoin = "round";
  if (points.length === 1) {
    context.beginPath();
    context.arc(points[0][0], points[0][1], INK_WIDTH / 2, 0, 2 * Math.PI);
    context.fill();
    return;
  }
  context.beginPath();
  context.moveTo(points[0][0], points[0][1]);
  for (const [x, y] of points.slice(1)) context.lineTo(x, y);
  context.stroke();
}

function redraw() {
  clearCanvas();
  for (const stroke of state.strokes) drawStroke(stroke);
}

function canvasPoint(event) {
  const box = canvas.getBoundingClientRect();
  return [
    ((event.clientX - box.left) * canvas.width) / box.width,
    ((event.clientY - box.top) * canvas.height) / box.height,
  ];
}

let activeStroke = null;

canvas.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  activeStroke = [canvasPoint(event)];
  state.strokes.push(activeStroke);
  state.lastInput = { kind: "drawing" };
  hint.textContent = DRAWING_HINT;
  redraw();
});

canvas.addEventListener("pointermove", (event) => {
  if (!activeStroke) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const each of events.length ? events : [event]) activeStroke.push(canvasPoint(each));
  redraw();
  requestPrediction();
});

function endStroke() {
  if (!activeStroke) return;
  activeStroke = null;
  requestPrediction();
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

document.getElementById("clear").addEventListener("click", () => {
  state.strokes = [];
  state.lastInput = null;
  redraw();
  resetAnswers();
});

document.getElementById("undo").addEventListener("click", () => {
  state.strokes.pop();
  redraw();
  if (state.strokes.length) {
    state.lastInput = { kind: "drawing" };
    requestPrediction();
  } else {
    state.lastInput = null;
    resetAnswers();
  }
});

document.getElementById("upload").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (!file) return;
  state.lastInput = { kind: "upload", file };
  hint.textContent = `Uploaded ${file.name}: the answers are for it (drawing again replaces it).`;
  showUpload(file);
  requestPrediction();
  event.target.value = "";
});

function showUpload(file) {
  // The picture itself on the canvas, fitted whole; the server reads the file, not this copy.
  const address = URL.createObjectURL(file);
  const picture = new Image();
  picture.onload = () => {
    state.strokes = [];
    clearCanvas();
    const scale = Math.min(canvas.width / picture.width, canvas.height / picture.height);
    const [width, height] = [picture.width * scale, picture.height * scale];
    context.drawImage(picture, (canvas.width - width) / 2, (canvas.height - height) / 2,
      width, height);
    URL.revokeObjectURL(address);
  };
  picture.onerror = () => URL.revokeObjectURL(address); // the server's answer says why
  picture.src = address;
}

function drawingPayload() {
  // One grey level per pixel (the canvas is black ink on white), base64, row by row.
  const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const grey = new Uint8Array(canvas.width * canvas.height);
  for (let i = 0; i < grey.length; i += 1) grey[i] = rgba[4 * i];
  let binary = "";
  for (let i = 0; i < grey.length; i += 8192) {
    binary += String.fromCharCode.apply(null, grey.subarray(i, i + 8192));
  }
  return JSON.stringify({ width: canvas.width, height: canvas.height, pixels: btoa(binary) });
}

// ---------------------------------------------------------------------------------------
// Predictions: at most one round trip at a time; a drawing that changed meanwhile is sent
// again as soon as the answer arrives, so the bars follow the pen without a queue.

function requestPrediction() {
  if (state.inFlight) {
    state.pending = true;
    return;
  }
  state.inFlight = true;
  state.pending = false;
  predictAll()
    .catch((error) => {
      // No answer is better than the previous input's answer shown as this one's.
      buildAnswerPanels();
      showMessage(error.message);
    })
    .finally(() => {
      state.inFlight = false;
      if (state.pending) requestPrediction();
    });
}

async function predictAll() {
  const input = state.lastInput;
  if (!input || (input.kind === "drawing" && !state.strokes.length)) return;
  const names = [state.primary, state.compare].filter(Boolean);
  const body = input.kind === "drawing" ? drawingPayload() : input.file;
  const answers = await Promise.all(
    names.map((name, position) => {
      const path = runPath(name, input.kind === "drawing" ? "/predict" : "/predict-image");
      return api(position === 0 ? atEpoch(path) : path, {
        method: "POST",
        headers: {
          "Content-Type": input.kind === "drawing" ? "application/json" : input.file.type || "application/octet-stream",
        },
        body,
      });
    }),
  );
  showMessage("");
  answers.forEach((answer, position) => showAnswer(answerPanels()[position], answer));
  if (input.kind === "drawing" && !activeStroke) await explain(names[0], body);
  else if (input.kind !== "drawing") hideExplanations(); // it explains drawings only
}

function hideExplanations() {
  document.getElementById("units-card").hidden = true;
  document.getElementById("looks-card").hidden = true;
}

// ---------------------------------------------------------------------------------------
// Why it answers so: the first layer's units, saliency, the smallest FGSM nudge.

function drawDiverging(target, values) {
  // Blue for positive, red for negative, white for zero; values already on -1..1.
  const draw = target.getContext("2d");
  const data = draw.createImageData(28, 28);
  values.forEach((value, i) => {
    const strength = Math.min(1, Math.abs(value));
    const fade = Math.round(255 * (1 - strength));
    const [r, g, b] = value >= 0 ? [fade, fade, 255] : [255, fade, fade];
    data.data.set([r, g, b, 255], 4 * i);
  });
  draw.putImageData(data, 0, 0);
}

async function explain(name, body) {
  let result;
  try {
    result = await api(atEpoch(runPath(name, "/explain")), {
      method: "POST", headers: { "Content-Type": "application/json" }, body,
    });
  } catch (error) {
    return; // the answer panel already says what is wrong with the drawing
  }
  if (name !== state.primary) return;
  document.getElementById("units-card").hidden = false;
  document.getElementById("looks-card").hidden = false;
  const holder = document.getElementById("units");
  holder.replaceChildren();
  for (const unit of result.units) {
    const figure = document.createElement("figure");
    figure.dataset.testid = "unit";
    const image = Object.assign(document.createElement("canvas"), { width: 28, height: 28 });
    drawDiverging(image, unit.weights);
    const caption = document.createElement("figcaption");
    caption.textContent = `#${unit.unit}: ${unit.activation.toFixed(2)}`;
    figure.title = `unit ${unit.unit} of ${result.first_layer_units}: its output for your digit is ${unit.activation.toFixed(3)}`;
    figure.append(image, caption);
    holder.appendChild(figure);
  }
  drawDiverging(document.getElementById("saliency"), result.saliency);
  document.getElementById("saliency-digit").textContent = String(result.digit);
  const caption = document.getElementById("adversarial-caption");
  const target = document.getElementById("adversarial");
  if (result.adversarial) {
    const nudge = result.adversarial;
    drawGrey(target, nudge.pixels, 28);
    caption.textContent = `moving each pixel by ${(100 * nudge.epsilon).toFixed(1)}% of full ink makes it say ${nudge.digit} (${(100 * nudge.probability).toFixed(0)}%) instead of ${result.digit}`;
  } else {
    target.getContext("2d").clearRect(0, 0, 28, 28);
    caption.textContent = `no nudge of up to 50% of full ink changes its answer ${result.digit}`;
  }
}

// ---------------------------------------------------------------------------------------
// The answer panels: one per run shown (the run, and the one it is compared with).

function answerPanels() {
  return Array.from(document.querySelectorAll("#answers .answer"));
}

function buildAnswerPanels() {
  const holder = document.getElementById("answers");
  holder.replaceChildren();
  const names = [state.primary, state.compare].filter(Boolean);
  names.forEach((name, position) => {
    const panel = document.getElementById("answer-template").content.firstElementChild.cloneNode(true);
    const suffix = position === 0 ? "" : "-compare";
    panel.dataset.run = name;
    panel.querySelector(".prediction").dataset.testid = `prediction${suffix}`;
    panel.querySelector(".probabilities").dataset.testid = `probabilities${suffix}`;
    panel.querySelector(".answer-run").textContent = name;
    const run = state.runs.find((each) => each.name === name);
    if (run) {
      const accuracy = run.test_accuracy == null ? "–" : `${(100 * run.test_accuracy).toFixed(2)}%`;
      panel.querySelector(".answer-summary").textContent = `${run.layers}, ${run.optimizer}, ${run.epochs} epochs, test accuracy ${accuracy}`;
    }
    const list = panel.querySelector(".probabilities");
    for (let digit = 0; digit < 10; digit += 1) {
      const item = document.createElement("li");
      item.dataset.digit = String(digit);
      item.innerHTML = `<span>${digit}</span><div class="bar"><span style="width:0%"></span></div><span class="value">–</span>`;
      list.appendChild(item);
    }
    holder.appendChild(panel);
  });
}

function resetAnswers() {
  buildAnswerPanels();
  hideExplanations();
  showMessage("");
}

function drawGrey(target, pixels, side) {
  const image = target.getContext("2d").createImageData(side, side);
  pixels.forEach((value, i) => {
    image.data[4 * i] = value;
    image.data[4 * i + 1] = value;
    image.data[4 * i + 2] = value;
    image.data[4 * i + 3] = 255;
  });
  target.getContext("2d").putImageData(image, 0, 0);
}

function showAnswer(panel, answer) {
  if (!panel) return;
  panel.querySelector(".prediction").textContent = String(answer.digit);
  // Probabilities are drawn on 0..1; scores (a sigmoid or linear output) from the lowest
  // to the highest of the ten, and printed as they are.
  const scores = answer.output_kind !== "probabilities";
  const low = scores ? Math.min(0, ...answer.probabilities) : 0;
  const high = scores ? Math.max(1e-9, ...answer.probabilities) : 1;
  panel.querySelectorAll(".probabilities li").forEach((item, digit) => {
    const probability = answer.probabilities[digit];
    const width = Math.max(0, Math.min(1, (probability - low) / (high - low)));
    item.classList.toggle("top", digit === answer.digit);
    item.querySelector(".bar span").style.width = `${(100 * width).toFixed(1)}%`;
    item.querySelector(".value").textContent = scores ? probability.toFixed(3) : `${(100 * probability).toFixed(1)}%`;
    item.dataset.probability = String(probability);
  });
  drawGrey(panel.querySelector(".network-input"), answer.network_input, 28);
  showActivations(panel.querySelector(".activations"), answer.activations);
}

function showActivations(holder, activations) {
  holder.replaceChildren();
  for (const layer of activations) {
    const caption = document.createElement("p");
    holder.appendChild(caption);
    if (!layer.values) {
      caption.textContent = `Hidden layer ${layer.name}: ${layer.units} units, too many to draw`;
      continue;
    }
    const largest = Math.max(...layer.values, 1e-9);
    const active = layer.values.filter((value) => value > 1e-6).length;
    caption.textContent = `Hidden layer ${layer.name}: ${layer.units} units, ${active} active (brighter: stronger)`;
    const columns = Math.ceil(Math.sqrt(layer.units * 2));
    const rows = Math.ceil(layer.units / columns);
    const cell = Math.max(4, Math.min(14, Math.floor(300 / columns)));
    const grid = document.createElement("canvas");
    grid.width = columns * cell;
    grid.height = rows * cell;
    const draw = grid.getContext("2d");
    draw.fillStyle = "#f0f2f5";
    draw.fillRect(0, 0, grid.width, grid.height);
    layer.values.forEach((value, unit) => {
      const strength = Math.max(0, Math.min(1, value / largest));
      const level = Math.round(255 * (1 - strength));
      draw.fillStyle = `rgb(${level}, ${Math.round(level * 0.9 + 20)}, 255)`;
      draw.fillRect((unit % columns) * cell, Math.floor(unit / columns) * cell, cell - 1, cell - 1);
    });
    holder.appendChild(grid);
  }
}

// ---------------------------------------------------------------------------------------
// The run: one glance, learning curves, confusion matrix, weight templates.

function glanceRows(run) {
  const accuracy = run.test_accuracy == null ? "–" : `${(100 * run.test_accuracy).toFixed(2)}%`;
  const preprocessing = run.preprocessing.binarize
    ? `binarized (pixel > ${run.preprocessing.binarize_threshold})`
    : run.preprocessing.scale ? "scaled to 0..1" : "raw 0..255";
  return [
    ["layers", run.layers.join("-")],
    ["activations", run.activations.join(", ")],
    ["optimizer", `${run.optimizer}, learning rate ${run.learning_rate}`],
    ["loss", run.loss],
    ["epochs", run.finished ? `${run.epochs} (batch ${run.batch_size})` : `${run.history.length} of ${run.epochs_planned} so far (batch ${run.batch_size})`],
    ["inputs", preprocessing],
    ["test accuracy", accuracy],
  ];
}

function showGlance(run) {
  document.getElementById("run-name").textContent = run.name;
  const list = document.getElementById("glance");
  list.replaceChildren();
  for (const [term, value] of glanceRows(run)) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    dd.dataset.key = term;
    list.append(dt, dd);
  }
  showCurves(run);
}

const SVG = "http://www.w3.org/2000/svg";

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text != null) element.textContent = text;
  return element;
}

function curveChart(title, run, trainKey, validationKey) {
  const history = run.history;
  const width = 300;
  const height = 190;
  const margin = { left: 52, right: 10, top: 22, bottom: 38 };
  const points = (key) => history.filter((row) => row[key] != null).map((row) => [row.epoch, row[key]]);
  const train = points(trainKey);
  const validation = points(validationKey);
  const all = train.concat(validation);
  const svg = svgElement("svg", { width, height, role: "img", "aria-label": `${title} per epoch` });
  svg.appendChild(svgElement("text", { x: margin.left, y: 12, class: "title" }, title));
  if (!all.length) return svg;
  const epochs = all.map((point) => point[0]);
  const values = all.map((point) => point[1]);
  let [low, high] = [Math.min(...values), Math.max(...values)];
  if (high - low < 1e-9) [low, high] = [low - 0.5, high + 0.5];
  const first = Math.min(1, ...epochs);
  const last = Math.max(run.finished ? 1 : run.epochs_planned, ...epochs);
  const plotBottom = height - margin.bottom;
  const x = (epoch) => margin.left + ((epoch - first) / Math.max(1, last - first)) * (width - margin.left - margin.right);
  const y = (value) => plotBottom - ((value - low) / (high - low)) * (plotBottom - margin.top);
  svg.appendChild(svgElement("line", { class: "axis", x1: margin.left, y1: plotBottom, x2: width - margin.right, y2: plotBottom }));
  svg.appendChild(svgElement("line", { class: "axis", x1: margin.left, y1: margin.top, x2: margin.left, y2: plotBottom }));
  // Axis labels and ticks: the value at the top and bottom, the first and last epoch.
  svg.appendChild(svgElement("text", { class: "tick", x: margin.left - 4, y: y(high) + 4, "text-anchor": "end" }, high.toPrecision(3)));
  svg.appendChild(svgElement("text", { class: "tick", x: margin.left - 4, y: y(low) + 4, "text-anchor": "end" }, low.toPrecision(3)));
  svg.appendChild(svgElement("text", { class: "tick", x: x(first), y: plotBottom + 13, "text-anchor": "middle" }, String(first)));
  svg.appendChild(svgElement("text", { class: "tick", x: x(last), y: plotBottom + 13, "text-anchor": "end" }, String(last)));
  svg.appendChild(svgElement("text", { class: "axis-label", x: (margin.left + width - margin.right) / 2, y: height - 4, "text-anchor": "middle" }, "epoch"));
  svg.appendChild(svgElement("text", { class: "axis-label", x: 12, y: (margin.top + plotBottom) / 2, "text-anchor": "middle", transform: `rotate(-90 12 ${(margin.top + plotBottom) / 2})` }, title));
  for (const step of run.rate_steps || []) {
    const at = x(step.epoch - 0.5);
    svg.appendChild(svgElement("line", { class: "rate-step", "data-epoch": step.epoch, x1: at, y1: margin.top, x2: at, y2: plotBottom }));
    svg.appendChild(svgElement("text", { class: "note", x: at + 2, y: margin.top + 9 }, `lr ${Number(step.learning_rate).toPrecision(2)}`));
  }
  if (run.best_epoch != null) {
    const at = x(run.best_epoch);
    svg.appendChild(svgElement("line", { class: "best", "data-epoch": run.best_epoch, x1: at, y1: margin.top, x2: at, y2: plotBottom }));
    svg.appendChild(svgElement("text", { class: "note best-label", x: Math.min(at + 2, width - 50), y: plotBottom - 4 }, `best ${run.best_epoch}`));
  }
  if (state.epoch != null) {
    const at = x(state.epoch);
    svg.appendChild(svgElement("line", { class: "replayed", x1: at, y1: margin.top, x2: at, y2: plotBottom }));
  }
  const line = (series, name) => {
    if (!series.length) return;
    if (series.length === 1) {
      svg.appendChild(svgElement("circle", { class: name, cx: x(series[0][0]), cy: y(series[0][1]), r: 3 }));
      return;
    }
    const path = series.map(([epoch, value], i) => `${i ? "L" : "M"}${x(epoch).toFixed(1)},${y(value).toFixed(1)}`).join(" ");
    svg.appendChild(svgElement("path", { class: name, d: path }));
  };
  line(train, "train");
  line(validation, "validation");
  svg.appendChild(svgElement("text", { class: "legend-train", x: width - 120, y: 12 }, "train"));
  if (validation.length) svg.appendChild(svgElement("text", { class: "legend-validation", x: width - 80, y: 12 }, "validation"));
  return svg;
}

function showCurves(run) {
  const holder = document.getElementById("curves");
  holder.replaceChildren();
  if (!run.history.length) {
    holder.textContent = run.finished ? "No history.csv recorded for this run." : "The first epoch is training: its point appears when it ends.";
    return;
  }
  holder.append(curveChart("loss", run, "loss", "val_loss"), curveChart("accuracy", run, "accuracy", "val_accuracy"));
  const notes = [];
  if (run.best_epoch != null) notes.push(`green dashes: the best epoch (${run.best_epoch}, by ${run.best_epoch_by})`);
  if ((run.rate_steps || []).length) notes.push("grey dots: the learning rate steps down");
  const caption = document.createElement("p");
  caption.className = "hint";
  caption.textContent = notes.join("; ");
  holder.appendChild(caption);
}

async function showConfusion(name) {
  const holder = document.getElementById("confusion");
  if (!holder.querySelector("table")) holder.textContent = "Computing the test set's predictions…";
  document.getElementById("errors").replaceChildren();
  const epoch = state.epoch;
  let result;
  try {
    result = await api(atEpoch(runPath(name, "/confusion")));
  } catch (error) {
    if (name === state.primary) holder.textContent = error.message;
    return;
  }
  if (name !== state.primary || epoch !== state.epoch) return;
  const matrix = result.matrix;
  const largestError = Math.max(1, ...matrix.flatMap((row, t) => row.filter((_, p) => p !== t)));
  const table = document.createElement("table");
  table.className = "matrix";
  const head = table.createTHead().insertRow();
  head.appendChild(Object.assign(document.createElement("th"), { textContent: "true\\said" }));
  for (let digit = 0; digit < 10; digit += 1) head.appendChild(Object.assign(document.createElement("th"), { textContent: digit }));
  const body = table.createTBody();
  matrix.forEach((row, trueDigit) => {
    const tableRow = body.insertRow();
    tableRow.appendChild(Object.assign(document.createElement("th"), { textContent: trueDigit }));
    row.forEach((count, predictedDigit) => {
      const cell = tableRow.insertCell();
      cell.textContent = count;
      cell.dataset.true = String(trueDigit);
      cell.dataset.pred = String(predictedDigit);
      if (trueDigit === predictedDigit) {
        cell.className = "diagonal";
      } else if (count === 0) {
        cell.className = "zero";
      } else {
        const strength = 0.25 + 0.75 * (count / largestError);
        cell.className = "wrong";
        cell.dataset.testid = "confusion-cell";
        cell.style.background = `rgba(210, 70, 60, ${strength.toFixed(2)})`;
        cell.title = `${count} test digits ${trueDigit} taken for ${predictedDigit}: click to see them`;
        cell.addEventListener("click", () => showErrors(name, trueDigit, predictedDigit, cell));
      }
    });
  });
  const summary = document.createElement("p");
  summary.className = "hint";
  const when = result.epoch == null ? "" : ` after epoch ${result.epoch}`;
  summary.dataset.testid = "confusion-summary";
  summary.textContent = `${result.num_errors} errors in ${result.num_samples} test digits${when} (accuracy ${(100 * result.accuracy).toFixed(2)}%).`;
  holder.replaceChildren(table, summary);
}

async function showErrors(name, trueDigit, predictedDigit, cell) {
  document.querySelectorAll("table.matrix td.selected").forEach((each) => each.classList.remove("selected"));
  cell.classList.add("selected");
  const holder = document.getElementById("errors");
  const result = await api(atEpoch(runPath(name, `/errors?true=${trueDigit}&pred=${predictedDigit}`)));
  const title = document.createElement("h3");
  const shown = result.errors.length < result.total ? ` (the ${result.errors.length} most confident shown)` : "";
  title.textContent = `${result.total} test digits ${trueDigit} taken for ${predictedDigit}${shown}`;
  const grid = document.createElement("div");
  grid.className = "error-grid";
  for (const error of result.errors) {
    const figure = document.createElement("figure");
    figure.dataset.testid = "error-digit";
    const digit = document.createElement("canvas");
    digit.width = 28;
    digit.height = 28;
    drawGrey(digit, error.pixels, 28);
    const caption = document.createElement("figcaption");
    caption.innerHTML = `${error.true} → ${error.predicted} (${(100 * error.probability).toFixed(0)}%)<br><span class="index">#${error.index}</span>`;
    figure.title = `test digit #${error.index}: true ${error.true} (${(100 * error.true_probability).toFixed(1)}%); top 3: ` + error.top_3.map((each) => `${each.digit} ${(100 * each.probability).toFixed(1)}%`).join(", ");
    figure.append(digit, caption);
    grid.appendChild(figure);
  }
  holder.replaceChildren(title, grid);
}

async function showTemplates(name, hasHiddenLayers) {
  const card = document.getElementById("templates-card");
  const holder = document.getElementById("templates");
  holder.replaceChildren();
  card.hidden = hasHiddenLayers;
  if (hasHiddenLayers) return;
  const result = await api(atEpoch(runPath(name, "/templates")));
  result.templates.forEach((weights, digit) => {
    const figure = document.createElement("figure");
    const image = Object.assign(document.createElement("canvas"), { width: 28, height: 28 });
    drawDiverging(image, weights);
    const caption = document.createElement("figcaption");
    caption.textContent = String(digit);
    figure.append(image, caption);
    holder.appendChild(figure);
  });
}

function offerComparisons(primary) {
  // Comparing a run with itself shows nothing new: the chosen run is not offered.
  const select = document.getElementById("compare");
  for (const option of select.options) {
    option.hidden = option.disabled = option.value !== "" && option.value === primary;
  }
  if (state.compare === primary) {
    state.compare = "";
    select.value = "";
  }
}

// ---------------------------------------------------------------------------------------
// A run still training: followed live; a run with snapshots: any epoch replayed.

function showLive(run) {
  const line = document.getElementById("live");
  line.hidden = run.finished;
  if (run.finished) return;
  const last = run.history[run.history.length - 1];
  const accuracy = last && last.accuracy != null ? `, training accuracy ${(100 * last.accuracy).toFixed(2)}%` : "";
  const piece = run.progress ? ` (epoch ${run.progress.epoch}: ${Math.round((100 * run.progress.batches_done) / run.progress.batches)}% of its batches)` : "";
  line.textContent = `${run.name} is not finished: ${run.history.length} of ${run.epochs_planned} epochs${accuracy}${piece}. The page follows it: each new epoch re-scores your digit and the confusion matrix.`;
}

function showEpochs(run) {
  const card = document.getElementById("epochs-card");
  const epochs = run.snapshot_epochs;
  card.hidden = !epochs.length;
  if (!epochs.length) return;
  const slider = document.getElementById("epoch");
  slider.min = String(epochs[0]);
  slider.max = String(epochs[epochs.length - 1]);
  if (state.epoch == null) slider.value = slider.max;
  document.getElementById("epoch-label").textContent = state.epoch == null ? `${slider.max} (newest)` : String(state.epoch);
}

function refreshAnswers() {
  // The weights changed (a new epoch, another epoch replayed): everything they answer.
  requestPrediction();
  showConfusion(state.primary);
  if (state.run && !state.run.has_hidden_layers) showTemplates(state.primary, false);
}

function onRunChanged(run) {
  const before = state.run;
  state.run = run;
  showGlance(run);
  showLive(run);
  showEpochs(run);
  // New weights (a checkpoint lands after its epoch's history row): new answers.
  const newWeights = before && before.name === run.name && before.weights_version !== run.weights_version;
  if (newWeights && state.epoch == null) refreshAnswers();
}

function follow(name, run) {
  if (state.live) state.live.close();
  state.live = null;
  if (run.finished) return;
  const source = new EventSource(runPath(name, "/live"));
  state.live = source;
  source.onmessage = (event) => {
    const described = JSON.parse(event.data);
    if (name !== state.primary) return;
    onRunChanged(described);
    if (described.finished) {
      source.close();
      // Its test accuracy is known now: in the run menus and the answer panel's summary.
      refreshRunList().then(() => { buildAnswerPanels(); requestPrediction(); });
    }
  };
}

document.getElementById("epoch").addEventListener("input", (event) => {
  const value = Number(event.target.value);
  const newest = state.run && value === state.run.snapshot_epochs[state.run.snapshot_epochs.length - 1];
  state.epoch = newest && !state.run.finished ? null : value;
  showEpochs(state.run);
  showCurves(state.run);
  refreshAnswers();
});

document.getElementById("epoch-newest").addEventListener("click", () => {
  state.epoch = null;
  showEpochs(state.run);
  showCurves(state.run);
  refreshAnswers();
});

async function selectRun(name) {
  state.primary = name;
  state.selectedCell = null;
  state.epoch = null;
  state.run = null;
  offerComparisons(name);
  buildAnswerPanels();
  document.getElementById("confusion").replaceChildren();
  hideExplanations();
  const run = await api(runPath(name));
  if (name !== state.primary) return;
  onRunChanged(run);
  follow(name, run);
  await Promise.all([showTemplates(name, run.has_hidden_layers), showConfusion(name)]);
}

function fillSelect(select, runs, keep) {
  for (const option of Array.from(select.options)) if (option.value) option.remove();
  for (const run of runs.slice().reverse()) {
    const option = document.createElement("option");
    option.value = run.name;
    const accuracy = run.test_accuracy == null ? "" : `, ${(100 * run.test_accuracy).toFixed(2)}%`;
    option.textContent = `${run.name} (${run.layers}${accuracy}${run.finished ? "" : ", not finished"})`;
    select.appendChild(option);
  }
  select.value = keep;
}

async function refreshRunList() {
  const listing = await api("/api/runs");
  state.runs = listing.runs;
  fillSelect(document.getElementById("run"), listing.runs, state.primary || "");
  fillSelect(document.getElementById("compare"), listing.runs, state.compare);
  offerComparisons(state.primary);
  return listing;
}

// ---------------------------------------------------------------------------------------
// Training from the page: a `mnist train` process the server starts and stops.

const trainForm = document.getElementById("train-form");

function fillTrainForm(status) {
  const form = status.form;
  const layers = document.getElementById("train-layers");
  const optimizer = document.getElementById("train-optimizer");
  for (const [select, values] of [[layers, form.layers], [optimizer, form.optimizers]]) {
    select.replaceChildren(...values.map((value) => Object.assign(document.createElement("option"), { value, textContent: value })));
  }
  layers.value = form.defaults.layers;
  optimizer.value = form.defaults.optimizer;
  document.getElementById("train-rate").value = form.defaults.learning_rate;
  const epochs = document.getElementById("train-epochs");
  epochs.value = form.defaults.epochs;
  epochs.max = form.max_epochs;
  document.getElementById("train-augment").checked = form.defaults.augment;
}

function showTraining(status) {
  const before = state.training;
  state.training = status;
  const line = document.getElementById("train-status");
  const running = ["starting", "training", "stopping"].includes(status.state);
  document.getElementById("train-start").disabled = !status.allowed || running;
  document.getElementById("train-stop").disabled = !status.allowed || status.state !== "training";
  if (!status.allowed) {
    line.textContent = status.refusal;
    for (const element of trainForm.elements) element.disabled = true;
    return;
  }
  const texts = {
    starting: "Starting mnist train…",
    training: `Training ${status.run}: the page follows it.`,
    stopping: `Stopping ${status.run} at the end of its epoch…`,
    stopped: `Stopped ${status.run}: its checkpoint is kept (${status.resume}).`,
    finished: `${status.run} finished.`,
    failed: `The training failed: ${status.error}`,
  };
  if (status.state) line.textContent = texts[status.state];
  // A run that has its folder now: list it and show it, live.
  if (status.run && (!before || before.run !== status.run)) {
    refreshRunList().then(() => {
      document.getElementById("run").value = status.run;
      return selectRun(status.run);
    }).catch((error) => showMessage(error.message));
  }
  if (running) setTimeout(pollTraining, 500);
}

function pollTraining() {
  api("/api/training").then(showTraining).catch((error) => showMessage(error.message));
}

trainForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const form = {
    layers: document.getElementById("train-layers").value,
    optimizer: document.getElementById("train-optimizer").value,
    learning_rate: Number(document.getElementById("train-rate").value),
    epochs: Number(document.getElementById("train-epochs").value),
    augment: document.getElementById("train-augment").checked,
  };
  state.training = null;
  api("/api/training", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(form) })
    .then((status) => { showMessage(""); showTraining(status); })
    .catch((error) => showMessage(error.message));
});

document.getElementById("train-stop").addEventListener("click", () => {
  api("/api/training/stop", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" })
    .then(showTraining)
    .catch((error) => showMessage(error.message));
});

async function start() {
  clearCanvas();
  const training = await api("/api/training");
  if (training.form) fillTrainForm(training);
  showTraining(training);
  const listing = await api("/api/runs");
  state.runs = listing.runs;
  if (!listing.runs.length) {
    showMessage("No run yet: train one below, or with `mnist train`.");
    return;
  }
  const wanted = new URLSearchParams(window.location.search).get("run");
  const first = listing.runs.some((run) => run.name === wanted) ? wanted : listing.latest;
  fillSelect(document.getElementById("run"), listing.runs, first);
  fillSelect(document.getElementById("compare"), listing.runs, "");
  await selectRun(first);
}

document.getElementById("run").addEventListener("change", (event) => {
  selectRun(event.target.value).then(requestPrediction).catch((error) => showMessage(error.message));
});
document.getElementById("compare").addEventListener("change", (event) => {
  state.compare = event.target.value;
  buildAnswerPanels();
  requestPrediction();
});

start().catch((error) => showMessage(error.message));
