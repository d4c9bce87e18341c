// Every dashboard chart, drawn with Chart.js (static/vendor/chartjs, vendored like htmx).
//
// A page marks a chart with <canvas data-chart="KIND" data-chart-data="ID"> and puts its
// numbers next to it with Django's json_script (<script type="application/json" id="ID">),
// which never runs: the Content-Security-Policy (core.csp) forbids inline scripts. The data
// tables under each chart carry the same numbers for screen readers and without JavaScript.
// Parts of a page that htmx refreshes (a running job's live section) are drawn again on
// htmx:load; charts whose canvas has left the page are destroyed.
(() => {
  "use strict";
  if (typeof window.Chart === "undefined") return;
  const Chart = window.Chart;

  const css = getComputedStyle(document.documentElement);
  const cssColor = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  const C = {
    fg: cssColor("--fg", "#1d2330"), muted: cssColor("--muted", "#6b7385"), line: cssColor("--line", "#e3e6ee"),
    accent: cssColor("--accent", "#3355ff"), danger: cssColor("--danger", "#c2332f"), ok: cssColor("--ok", "#1f8a4c"),
    orange: "#d9822b", before: "#9aa5b1", after: "#2f6fdb",
  };

  Chart.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", sans-serif';
  Chart.defaults.color = C.muted;
  Chart.defaults.borderColor = C.line;
  Chart.defaults.responsive = true;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.animation = false; // a live page redraws every 2 s: no flicker

  const title = (text) => ({ display: true, text, color: C.fg });
  const num = (v, digits = 4) => Number(v).toLocaleString("en-US", { maximumFractionDigits: digits });
  const usd = (v) => "$" + (v === 0 ? "0" : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(4));
  const bytes = (n) => {
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return (i ? n.toFixed(1) : n.toFixed(0)) + " " + units[i];
  };
  const withUnit = (v, unit) => (unit === "bytes" ? bytes(v) : num(v) + (unit ? " " + unit : ""));
  const shorten = (text, n) => (text.length > n ? text.slice(0, n - 1) + "…" : text);
  // Horizontal bar charts grow with their rows (CSSOM, which the CSP allows; no style attribute).
  const fitHeight = (canvas, rows, perRow, extra) => {
    canvas.parentNode.style.height = Math.max(160, rows * perRow + extra) + "px";
  };

  // Dashed vertical lines, labelled, where epochs end (the job chart).
  const epochMarks = {
    id: "epochMarks",
    afterDatasetsDraw(chart, _args, options) {
      const marks = options.marks || [];
      const { ctx, chartArea: area, scales: { x } } = chart;
      ctx.save();
      ctx.strokeStyle = options.color;
      ctx.fillStyle = options.color;
      ctx.setLineDash([4, 4]);
      ctx.lineWidth = 1;
      ctx.font = "11px " + Chart.defaults.font.family;
      ctx.textAlign = "right";
      ctx.textBaseline = "top";
      for (const mark of marks) {
        const px = x.getPixelForValue(mark.step);
        if (px < area.left - 0.5 || px > area.right + 0.5) continue;
        ctx.beginPath();
        ctx.moveTo(px, area.top);
        ctx.lineTo(px, area.bottom);
        ctx.stroke();
        ctx.fillText("epoch " + mark.epoch, px - 3, area.top + 3);
      }
      ctx.restore();
    },
  };

  const BUILDERS = {
    // Job page: train / validation loss (left scale) and accuracy / macro-F1 (right, 0–1) per step.
    "job-metrics": (data) => {
      const colors = { train_loss: C.danger, eval_loss: C.orange, accuracy: C.ok, macro_f1: C.accent };
      const hasLoss = data.series.some((s) => s.axis === "loss");
      const hasScore = data.series.some((s) => s.axis === "score");
      const datasets = data.series.map((s) => ({
        label: s.label,
        data: s.points.map(([x, y]) => ({ x, y })),
        yAxisID: s.axis,
        borderColor: colors[s.key] || C.fg,
        backgroundColor: colors[s.key] || C.fg,
        borderWidth: 2,
        // Training loss is dense (a point every few steps); evaluations are one per epoch.
        pointRadius: s.key === "train_loss" && s.points.length > 1 ? 0 : 4,
        pointHoverRadius: 5,
      }));
      return {
        type: "line",
        data: { datasets },
        plugins: [epochMarks],
        options: {
          interaction: { mode: "nearest", axis: "x", intersect: false },
          scales: {
            x: { type: "linear", min: 0, max: data.x_max, title: title("training step"), ticks: { precision: 0 } },
            loss: { type: "linear", axis: "y", position: "left", beginAtZero: true, display: hasLoss, title: title("loss") },
            score: {
              type: "linear", axis: "y", position: "right", min: 0, max: 1, display: hasScore,
              title: title("accuracy / macro-F1 (0–1)"), grid: { drawOnChartArea: !hasLoss },
            },
          },
          plugins: {
            legend: { position: "bottom" },
            epochMarks: { marks: data.epochs, color: C.muted },
            tooltip: {
              callbacks: {
                title: (items) => "step " + items[0].parsed.x,
                label: (item) => item.dataset.label + ": " + num(item.parsed.y),
              },
            },
          },
        },
      };
    },

    // Billing page: cost per day over the period.
    "cost-per-day": (data) => ({
      type: "bar",
      data: {
        labels: data.days.map((d) => d.date),
        datasets: [{ label: "cost", data: data.days.map((d) => d.usd), backgroundColor: C.after, maxBarThickness: 28 }],
      },
      options: {
        scales: {
          x: {
            title: title("day (UTC)"),
            ticks: { maxRotation: 0, autoSkip: true, callback(value) { return this.getLabelForValue(value).slice(5); } },
            grid: { display: false },
          },
          y: { beginAtZero: true, title: title("cost (USD)"), ticks: { callback: (v) => usd(v) } },
        },
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: (item) => {
                const day = data.days[item.dataIndex];
                return usd(day.usd) + " · " + num(day.seconds, 1) + " s of compute";
              },
            },
          },
        },
      },
    }),

    // Dataset page: rows per label, most frequent first.
    "label-counts": (bars, canvas) => {
      fitHeight(canvas, bars.length, 20, 70);
      return {
        type: "bar",
        data: {
          labels: bars.map((b) => b.label),
          datasets: [{ label: "rows", data: bars.map((b) => b.count), backgroundColor: C.accent, maxBarThickness: 16 }],
        },
        options: {
          indexAxis: "y",
          scales: {
            x: { beginAtZero: true, title: title("rows"), ticks: { precision: 0 } },
            y: {
              title: title("label"),
              ticks: { autoSkip: false, callback(value) { return shorten(this.getLabelForValue(value), 28); } },
              grid: { display: false },
            },
          },
          plugins: {
            legend: { display: false },
            tooltip: { callbacks: { label: (item) => num(item.parsed.x, 0) + " rows" } },
          },
        },
      };
    },

    // Dataset page: rows by text length; bins past the maximum length (truncated) in red.
    "length-histogram": (data) => {
      const over = data.bins.some((b) => b.over);
      return {
        type: "bar",
        data: {
          labels: data.bins.map((b) => b.from + "–" + b.to),
          datasets: [{
            label: "rows", data: data.bins.map((b) => b.count),
            backgroundColor: data.bins.map((b) => (b.over ? C.danger : C.accent)), barPercentage: 1, categoryPercentage: 0.92,
          }],
        },
        options: {
          scales: {
            x: { title: title("length (" + (data.unit || "tokens") + ")"), grid: { display: false } },
            y: { beginAtZero: true, title: title("rows"), ticks: { precision: 0 } },
          },
          plugins: {
            legend: { display: false },
            subtitle: { display: over, text: "red: longer than the maximum length (truncated)", color: C.danger },
            tooltip: {
              callbacks: {
                title: (items) => items[0].label + " " + (data.unit || ""),
                label: (item) => num(item.parsed.y, 0) + " rows" + (data.bins[item.dataIndex].over ? " (truncated)" : ""),
              },
            },
          },
        },
      };
    },

    // Compression report: before and after per measure, each pair as a share of its larger value.
    "compression-bars": (bars, canvas) => {
      fitHeight(canvas, bars.length, 46, 90);
      return {
        type: "bar",
        data: {
          labels: bars.map((b) => [b.label, "(" + b.hint + ")"]),
          datasets: [
            { label: "before", data: bars.map((b) => b.before_pct), backgroundColor: C.before, maxBarThickness: 14 },
            { label: "after", data: bars.map((b) => b.after_pct), backgroundColor: C.after, maxBarThickness: 14 },
          ],
        },
        options: {
          indexAxis: "y",
          scales: {
            x: { min: 0, max: 100, title: title("% of the larger of before and after"), ticks: { callback: (v) => v + "%" } },
            y: { ticks: { autoSkip: false }, grid: { display: false } },
          },
          plugins: {
            legend: { position: "bottom" },
            tooltip: {
              callbacks: {
                label: (item) => {
                  const bar = bars[item.dataIndex];
                  const value = item.datasetIndex === 0 ? bar.before : bar.after;
                  return item.dataset.label + ": " + withUnit(value, bar.unit);
                },
              },
            },
          },
        },
      };
    },

    // Compression report: the pruning search, accuracy drop by share removed, against the guard.
    "search-curve": (curve) => {
      const points = curve.points.map((p) => ({ x: p.amount, y: p.drop }));
      const chosen = curve.points.find((p) => p.amount === curve.chosen);
      const datasets = [
        {
          label: "accuracy drop", data: points, showLine: true, borderColor: C.accent, borderWidth: 2, pointRadius: 5,
          pointBackgroundColor: curve.points.map((p) => (p.passed ? C.ok : C.danger)),
          pointBorderColor: curve.points.map((p) => (p.passed ? C.ok : C.danger)),
        },
        {
          label: "guard (" + curve.guard + " points)", data: [{ x: 0, y: curve.guard }, { x: 1, y: curve.guard }],
          showLine: true, borderColor: C.danger, borderDash: [6, 4], borderWidth: 1.5, pointRadius: 0, pointHoverRadius: 0,
        },
      ];
      if (chosen) {
        datasets.push({
          label: "chosen (" + chosen.amount + ")", data: [{ x: chosen.amount, y: chosen.drop }], pointStyle: "rectRot",
          pointRadius: 9, pointBorderWidth: 2, borderColor: C.fg, backgroundColor: "rgba(0,0,0,0)",
        });
      }
      return {
        type: "scatter",
        data: { datasets },
        options: {
          scales: {
            x: { type: "linear", min: 0, max: 1, title: title("share removed (0–1)") },
            y: { beginAtZero: true, title: title("accuracy drop (points)") },
          },
          plugins: {
            legend: { position: "bottom" },
            tooltip: {
              callbacks: {
                label: (item) => item.dataset.label + ": " + num(item.parsed.y, 2) + " points at " + num(item.parsed.x, 3),
              },
            },
          },
        },
      };
    },
  };

  const drawn = new Set();

  function dataFor(canvas) {
    // The JSON sits right after the chart's box; by id otherwise.
    const next = canvas.parentNode && canvas.parentNode.nextElementSibling;
    const script = next && next.id === canvas.dataset.chartData ? next : document.getElementById(canvas.dataset.chartData);
    return script ? JSON.parse(script.textContent) : null;
  }

  function draw(root) {
    for (const chart of Array.from(drawn)) {
      if (!chart.canvas || !chart.canvas.isConnected) { chart.destroy(); drawn.delete(chart); }
    }
    if (!root || !root.querySelectorAll) return;
    const canvases = root.matches && root.matches("canvas[data-chart]") ? [root] : root.querySelectorAll("canvas[data-chart]");
    canvases.forEach((canvas) => {
      if (Chart.getChart(canvas)) return;
      const build = BUILDERS[canvas.dataset.chart];
      const data = dataFor(canvas);
      if (!build || data === null) return;
      drawn.add(new Chart(canvas, build(data, canvas)));
    });
  }

  document.addEventListener("htmx:load", (event) => draw(event.detail.elt));
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => draw(document));
  } else {
    draw(document);
  }
})();
