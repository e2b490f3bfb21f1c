// The dashboard page: applies the server's updates (Server-Sent Events on /events) to the DOM.
// Every text that came from the pipeline is set with textContent, never parsed as HTML, so a
// label, a source or a reason such as "<script>" is shown as text.
"use strict";

const cards = new Map(); // stream -> {root, parts}
let logSize = 200; // lines kept in the event log (dashboard.event_log_size, sent with the first update)

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

// Touch the DOM only where something changed: a dashboard left open all day should cost little.
function setText(node, text) {
  const value = String(text);
  if (node.textContent !== value) node.textContent = value;
}

function setAttribute(node, name, value) {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}

function setBars(container, topK) {
  while (container.children.length > topK.length) container.lastChild.remove();
  while (container.children.length < topK.length) {
    const bar = el("div", "bar");
    const track = el("div", "track");
    track.append(el("div", "fill"));
    bar.append(el("span", "name"), track, el("span", "value"));
    container.append(bar);
  }
  topK.forEach(([name, probability], index) => {
    const bar = container.children[index];
    setText(bar.querySelector(".name"), name);
    setText(bar.querySelector(".value"), fmt(probability, 2));
    const width = (100 * Math.max(0, Math.min(1, probability))).toFixed(1) + "%";
    const fill = bar.querySelector(".fill");
    if (fill.style.width !== width) fill.style.width = width;
  });
}

function fmt(value, digits) {
  return value === null || value === undefined ? "-" : Number(value).toFixed(digits);
}

function makeCard(stream) {
  const root = el("article", "card");
  root.dataset.stream = stream;
  const top = el("div", "top");
  const name = el("span", "name", stream);
  const status = el("span", "badge");
  top.append(name, status);
  const source = el("div", "source");
  const body = el("div", "body");
  const image = el("img");
  image.alt = "latest frame of " + stream;
  image.hidden = true;
  const labels = el("div", "labels");
  const label = el("span", "label", "-");
  const score = el("span", "score");
  const headline = el("div");
  headline.append(label, score);
  const bars = el("div", "bars");
  labels.append(headline, bars);
  body.append(image, labels);
  const facts = el("div", "facts");
  const fact = (title) => { const box = el("div"); const value = el("b", null, "-"); box.append(el("span", null, title + " "), value); facts.append(box); return value; };
  const parts = { name, status, source, image, label, score, bars, window: fact("window"), latency: fact("latency"),
                  percentiles: fact("p50/p99"), truth: fact("truth"), accuracy: fact("live acc"), seq: fact("seq") };
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 120 40");
  svg.setAttribute("preserveAspectRatio", "none");
  const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
  title.textContent = "latency p50 (blue) and p99 (yellow), last minute";
  parts.p50 = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  parts.p50.setAttribute("class", "p50");
  parts.p99 = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  parts.p99.setAttribute("class", "p99");
  svg.append(title, parts.p50, parts.p99);
  root.append(top, source, body, facts, svg);
  return { root, parts, preview: null };
}

function placeCard(stream, card) {
  const container = document.getElementById("cards");
  const after = [...cards.keys()].sort().find((other) => other > stream);
  container.insertBefore(card.root, after ? cards.get(after).root : null);
  document.getElementById("empty").hidden = true;
}

function chartPoints(chart, index, top) {
  const step = 120 / Math.max(1, chart.length - 1);
  return chart.map((point, i) => point ? `${(i * step).toFixed(1)},${(40 - 38 * point[index] / top).toFixed(1)}` : null)
    .filter(Boolean).join(" ");
}

function updateCard(data) {
  let card = cards.get(data.stream);
  if (!card) {
    card = makeCard(data.stream);
    cards.set(data.stream, card);
    placeCard(data.stream, card);
  }
  const p = card.parts;
  const label = data.label;
  if (card.root.classList.contains("ended") !== (data.ended !== null)) card.root.classList.toggle("ended");
  setText(p.source, data.source);
  const [status, look] = data.ended !== null ? ["ended: " + data.ended, "badge off"]
    : label && label.warming ? ["warming up", "badge warming"] : [label ? "live" : "starting", "badge on"];
  setText(p.status, status);
  if (p.status.className !== look) p.status.className = look;
  if (label) {
    setText(p.label, label.label);
    setText(p.score, fmt(label.score, 2));
    setBars(p.bars, label.top_k);
    setText(p.window, (label.warming ? "warming " : "") + label.frames_in_window);
    setText(p.latency, fmt(label.latency_ms, 0) + " ms");
    setText(p.truth, label.truth === null ? "-" : label.truth);
    setText(p.seq, label.seq);
  }
  setText(p.percentiles, data.p50_ms === null ? "-" : `${fmt(data.p50_ms, 0)}/${fmt(data.p99_ms, 0)} ms`);
  setText(p.accuracy, data.accuracy === null ? "-" : `${(100 * data.accuracy).toFixed(1)}% of ${data.judged}`);
  const top = Math.max(1, ...data.chart.filter(Boolean).map((point) => point[1]));
  setAttribute(p.p50, "points", chartPoints(data.chart, 0, top));
  setAttribute(p.p99, "points", chartPoints(data.chart, 1, top));
  if (data.preview !== null && data.preview !== card.preview) {
    card.preview = data.preview;
    p.image.src = "preview/" + encodeURIComponent(data.stream) + "?n=" + data.preview;
    p.image.hidden = false;
  }
}

function addEvents(events) {
  const list = document.getElementById("events");
  for (const event of events) {
    const item = el("li");
    const time = el("time", null, new Date(event.t * 1000).toLocaleTimeString());
    item.append(time, el("span", "stream", event.stream), el("span", "text", event.text));
    list.prepend(item);
  }
  while (list.children.length > logSize) list.lastChild.remove();
}

function describe(map) {
  const entries = Object.entries(map);
  return entries.length ? entries.map(([key, value]) => `${key} ${Math.round(value)}`).join(", ") : "-";
}

function showProcesses(rows) {
  const body = document.querySelector("#processes tbody");
  body.replaceChildren(...rows.map((row) => {
    const line = el("tr");
    line.append(el("td", null, row.process + (row.backend.length ? " (" + row.backend.join(", ") + ")" : "")),
                el("td", null, describe(row.frames)), el("td", null, describe(row.dropped)),
                el("td", null, describe(row.queues)), el("td", null, row.restarts));
    return line;
  }));
}

function showModel(model) {
  setText(document.getElementById("model"), "model " + (model.model_ids.join(", ") || "-"));
  setText(document.getElementById("backend"), "backend " + (model.backends.join(", ") || "-"));
}

function connect() {
  const connection = document.getElementById("connection");
  const events = new EventSource("events");
  events.onopen = () => { connection.textContent = "live"; connection.className = "badge on"; };
  events.onerror = () => { connection.textContent = "reconnecting"; connection.className = "badge off"; };
  events.onmessage = (message) => {
    const update = JSON.parse(message.data);
    if (update.log_size) logSize = update.log_size;
    for (const card of update.cards || []) updateCard(card);
    if (update.events) addEvents(update.events);
    if (update.processes) showProcesses(update.processes);
    if (update.model) showModel(update.model);
    const live = [...cards.values()].filter((card) => !card.root.classList.contains("ended")).length;
    setText(document.getElementById("live"), live + " stream" + (live === 1 ? "" : "s") + " live");
  };
}

connect();
