// The console's only script of its own: draws the analysis charts (Chart.js) from each
// canvas's `data-chart` JSON, again after each live swap. No inline script anywhere (CSP).
"use strict";

(function () {
  const charts = new Map();
  const colours = ["#1f5fa8", "#b3470a", "#2f7d32", "#6a3d9a", "#8c564b"];

  function draw() {
    if (typeof Chart === "undefined") return;
    charts.forEach(function (c) { c.destroy(); });
    charts.clear();
    document.querySelectorAll("canvas.chart").forEach(function (canvas) {
      let check;
      try { check = JSON.parse(canvas.dataset.chart || "null"); } catch (e) { return; }
      if (!check) return;
      if (check.kind === "bars") {  // a figure per period (insights)
        charts.set(canvas, new Chart(canvas, {
          type: "bar",
          data: {
            labels: check.labels,
            datasets: [{ label: check.title, data: check.values, backgroundColor: colours[0] }],
          },
          options: { animation: false },
        }));
        return;
      }
      const t0 = Math.min.apply(null, check.series.flatMap(function (s) {
        return s.points.map(function (p) { return p[0]; });
      }).concat([Infinity]));
      const datasets = check.series.map(function (s, i) {
        return {
          label: s.label,
          data: s.points.map(function (p) { return { x: p[0] - t0, y: p[1] }; }),
          borderColor: colours[i % colours.length],
          pointRadius: 1,
        };
      });
      ["expected_min", "expected_max"].forEach(function (bound) {
        if (check[bound] === null || !isFinite(t0)) return;
        const xs = datasets.flatMap(function (d) { return d.data.map(function (p) { return p.x; }); });
        datasets.push({
          label: bound.replace("expected_", "") + " threshold",
          data: [{ x: 0, y: check[bound] }, { x: Math.max.apply(null, xs.concat([1])), y: check[bound] }],
          borderColor: "#a00",
          borderDash: [6, 4],
          pointRadius: 0,
        });
      });
      charts.set(canvas, new Chart(canvas, {
        type: "line",
        data: { datasets: datasets },
        options: {
          animation: false,
          parsing: false,
          scales: { x: { type: "linear", title: { display: true, text: "seconds" } } },
        },
      }));
    });
  }

  // A sign-in link (`slipway up` prints one) carries the key in the fragment, which no
  // server sees: fill the form with it, and take it out of the address bar and history.
  function fillKeyFromLink() {
    const field = document.getElementById("api_key");
    if (!field || !location.hash.startsWith("#key=")) return;
    field.value = decodeURIComponent(location.hash.slice(5));
    history.replaceState(null, "", location.pathname + location.search);
  }

  document.addEventListener("DOMContentLoaded", fillKeyFromLink);
  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSettle", draw);
})();
