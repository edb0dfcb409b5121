// hookgate dashboard: refreshes the overview's figures, charts and latest messages.
// Short polling of one small JSON answer: every 2 s while the tab is visible, backing
// off (doubling, up to 60 s) while the daemon does not answer; stopped while hidden.
"use strict";

const BASE_DELAY = 2000;
const MAX_DELAY = 60000;
const SVG = "http://www.w3.org/2000/svg";

function setCells(values) {
  for (const cell of document.querySelectorAll("[data-key]")) {
    const value = values[cell.dataset.key];
    if (value !== undefined) cell.textContent = value;
  }
}

function setLatest(messages) {
  const body = document.querySelector("#latest tbody");
  if (!body) return;
  const rows = messages.map((m) => {
    const row = document.createElement("tr");
    const link = document.createElement("a");
    link.href = "/messages/" + encodeURIComponent(m.id);
    link.textContent = m.received_at;
    const d = m.deliveries;
    const cells = [link, m.source, m.event_type || "-", m.event_id || "-",
      `${d.delivered} delivered, ${d.pending} pending, ${d.dead} dead`];
    const labels = ["Received (UTC)", "Source", "Event type", "Event id", "Deliveries"];
    cells.forEach((content, i) => {
      const cell = document.createElement("td");
      cell.dataset.label = labels[i];
      if (typeof content === "string") cell.textContent = content;
      else cell.append(content);
      row.append(cell);
    });
    return row;
  });
  body.replaceChildren(...rows);
}

// One bar per sampling interval (10 s) of the last hour; the last bar is "so far".
function setCharts(charts) {
  for (const svg of document.querySelectorAll("svg[data-series]")) {
    const series = charts[svg.dataset.series] || [];
    const top = Math.max(1, ...series);
    const width = 300 / Math.max(series.length, 30);
    const bars = series.map((value, i) => {
      const bar = document.createElementNS(SVG, "rect");
      const height = Math.max((value / top) * 76, value > 0 ? 1 : 0);
      bar.setAttribute("x", (300 - (series.length - i) * width).toFixed(2));
      bar.setAttribute("y", (78 - height).toFixed(2));
      bar.setAttribute("width", Math.max(width - 1, 0.5).toFixed(2));
      bar.setAttribute("height", height.toFixed(2));
      return bar;
    });
    svg.querySelector("g.bars").replaceChildren(...bars);
    const last = document.querySelector(`[data-last="${svg.dataset.series}"]`);
    if (last) last.textContent = series.length ? `· now ${series[series.length - 1]}, max ${top}` : "";
  }
}

function startLive(url) {
  const status = document.getElementById("live-status");
  let delay = BASE_DELAY;
  let timer = null;

  async function poll() {
    timer = null;
    try {
      const answer = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (answer.status === 401) {
        window.location.assign("/signin");
        return;
      }
      if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
      const live = await answer.json();
      setCells(live.values);
      setLatest(live.latest);
      setCharts(live.charts);
      delay = BASE_DELAY;
      if (status) status.textContent = "Live: updated " + new Date().toLocaleTimeString();
    } catch (error) {
      delay = Math.min(delay * 2, MAX_DELAY);
      if (status) status.textContent = `Live: no answer (${error.message}), next try in ${delay / 1000} s`;
    }
    schedule();
  }

  function schedule() {
    if (timer === null && !document.hidden) timer = setTimeout(poll, delay);
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden && timer !== null) {
      clearTimeout(timer);
      timer = null;
    } else {
      schedule();
    }
  });
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  const url = document.body.dataset.live;
  if (url) startLive(url);
});
