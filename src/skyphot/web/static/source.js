// Source page: light curve (Plotly), jobs and the photometry table; refreshed live.
"use strict";
(function () {
  const root = document.getElementById("source");
  const sourceId = root.dataset.sourceId;
  const skyportal = root.dataset.skyportal === "true";
  const esc = window.skyphot.escapeHtml;
  const COLORS = {u: "#6a3d9a", g: "#1b9e3e", r: "#d62728", i: "#ff7f0e", z: "#8c564b", y: "#444444",
    U: "#6a3d9a", B: "#1f5fd1", V: "#2ca02c", R: "#e41a1c", I: "#b15928", J: "#17becf", H: "#7f7f7f", K: "#bcbd22"};
  const PALETTE = ["#1f77b4", "#9467bd", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
  let points = [];
  let view = "mag";
  const hidden = new Set();
  let sortKey = "mjd", sortDir = 1;

  function colorOf(filter, index) {
    const short = filter.replace(/^(sdss|ps1|ztf|atlas)[_-]?/i, "").replace(/'$/, "");
    return COLORS[filter] || COLORS[short] || PALETTE[index % PALETTE.length];
  }
  const fmt = (v, digits) => (v === null || v === undefined ? "" : Number(v).toFixed(digits));
  const mjdToDate = (mjd) => new Date((mjd - 40587) * 86400000).toISOString().replace("Z", "");

  function hover(p) {
    const what = p.mag !== null ? `${p.filter} = ${fmt(p.mag, 3)} ± ${fmt(p.magerr, 3)}`
      : `${p.filter} > ${fmt(p.limiting_mag, 2)} (${fmt(p.limit_sigma, 0)}σ limit)`;
    return `${what}<br>MJD ${fmt(p.mjd, 5)} (${p.iso})<br>flux ${fmt(p.flux, 2)} ± ${fmt(p.fluxerr, 2)} µJy` +
      `<br>instrument: ${esc(p.instrument || "?")}<br>origin: ${esc(p.origin)}` +
      (p.limit_sigma ? `<br>limit sigma: ${fmt(p.limit_sigma, 0)}` : "");
  }

  function drawPlot() {
    const div = document.getElementById("lightcurve");
    const empty = document.getElementById("plot-empty");
    if (!points.length) { if (empty) empty.hidden = false; return; }
    if (empty) empty.hidden = true;
    const filters = [...new Set(points.map((p) => p.filter))].sort();
    const traces = [];
    filters.forEach((filter, index) => {
      const color = colorOf(filter, index);
      const visible = hidden.has(filter) ? "legendonly" : true;
      const mine = points.filter((p) => p.filter === filter);
      if (view === "mag") {
        const det = mine.filter((p) => p.mag !== null);
        const lim = mine.filter((p) => p.mag === null && p.limiting_mag !== null);
        traces.push({x: det.map((p) => mjdToDate(p.mjd)), y: det.map((p) => p.mag), name: filter, legendgroup: filter,
          mode: "markers", type: "scatter", visible, marker: {color, size: 9},
          error_y: {type: "data", array: det.map((p) => p.magerr), visible: true, color},
          text: det.map(hover), hoverinfo: "text"});
        traces.push({x: lim.map((p) => mjdToDate(p.mjd)), y: lim.map((p) => p.limiting_mag), name: `${filter} limit`,
          legendgroup: filter, showlegend: lim.length > 0, mode: "markers", type: "scatter", visible,
          marker: {color, size: 11, symbol: "triangle-down-open", line: {width: 2}}, text: lim.map(hover), hoverinfo: "text"});
      } else {
        const all = mine.filter((p) => p.flux !== null);
        traces.push({x: all.map((p) => mjdToDate(p.mjd)), y: all.map((p) => p.flux), name: filter, legendgroup: filter,
          mode: "markers", type: "scatter", visible, marker: {color, size: 9},
          error_y: {type: "data", array: all.map((p) => p.fluxerr), visible: true, color},
          text: all.map(hover), hoverinfo: "text"});
      }
    });
    // Keep at least two days on the time axis so a single night is not zoomed to milliseconds.
    const mjds = points.map((p) => p.mjd);
    let lo = Math.min(...mjds), hi = Math.max(...mjds);
    const pad = Math.max(1, (hi - lo) * 0.05);
    lo -= pad; hi += pad;
    const layout = {margin: {t: 20, r: 20, b: 50, l: 60}, hovermode: "closest", legend: {orientation: "h", y: -0.18},
      xaxis: {title: {text: `Date (UTC) — MJD ${lo.toFixed(1)} to ${hi.toFixed(1)}`}, type: "date", range: [mjdToDate(lo), mjdToDate(hi)]},
      yaxis: view === "mag" ? {title: {text: "Magnitude"}, autorange: "reversed"} : {title: {text: "Flux (µJy)"}, zeroline: true}};
    window.Plotly.react(div, traces, layout, {displaylogo: false, responsive: true});
  }

  function drawToggles() {
    const box = document.getElementById("filter-toggles");
    const filters = [...new Set(points.map((p) => p.filter))].sort();
    box.innerHTML = filters.map((f, i) => `<label class="inline"><input type="checkbox" data-filter="${esc(f)}" ${hidden.has(f) ? "" : "checked"}>` +
      `<span style="color:${colorOf(f, i)}">●</span> ${esc(f)}</label>`).join("");
    box.querySelectorAll("input").forEach((input) => input.addEventListener("change", () => {
      if (input.checked) hidden.delete(input.dataset.filter); else hidden.add(input.dataset.filter);
      drawPlot();
    }));
  }

  function colourText(cal) {
    if (cal.color_term === null || cal.color_term === undefined || !cal.color_bands) return "";
    const name = `${esc(cal.color_bands[0])}−${esc(cal.color_bands[1])}`;
    const where = cal.color_source === "light_curve"
      ? `from the light curve (points ${(cal.color_points || []).join(", ")})`
      : cal.color_source === "calibrators_median" ? "assumed: calibrators' median" : esc(cal.color_source || "");
    return `, colour <span class="colour-used" data-source="${esc(cal.color_source || "")}">${name} = ${fmt(cal.target_color, 3)}</span> ${where}`;
  }

  function pushText(p) {
    const s = p.skyportal;
    let text = esc(s.state);
    if (s.state === "pushed") text += ` (id ${s.id})`;
    if (s.error) text += ` <span class="muted" title="${esc(s.error)}">${esc(s.error)}</span>`;
    if (skyportal && s.state !== "pending") text += ` <button class="small push" data-id="${p.id}">${s.state === "pushed" ? "Re-push" : "Push"}</button>`;
    return text;
  }

  const colourSwitch = document.getElementById("light-curve-colors");
  if (colourSwitch) colourSwitch.addEventListener("change", async () => {
    const response = await fetch(`/api/sources/${encodeURIComponent(sourceId)}`, {
      method: "PATCH", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({light_curve_colors: colourSwitch.checked})});
    if (!response.ok) { const e = await response.json(); window.skyphot.notify({failure: true, html: esc(e.error.message)}); }
    loadPhotometry();
  });

  function drawTable() {
    const body = document.querySelector("#photometry-table tbody");
    const rows = [...points].sort((a, b) => {
      const x = a[sortKey], y = b[sortKey];
      if (x === y) return 0; if (x === null) return 1; if (y === null) return -1;
      return (x < y ? -1 : 1) * sortDir;
    });
    body.innerHTML = rows.map((p) => {
      const cal = p.calibration || {};
      const details = p.origin === "skyphot"
        ? `catalog ${esc(cal.catalog)}, ZP ${fmt(cal.zero_point, 3)}, colour term ${cal.color_term === null || cal.color_term === undefined ? "–" : fmt(cal.color_term, 3)}, FWHM ${fmt(cal.fwhm_arcsec, 2)}″` +
          ((cal.flag_names || []).length ? ` · flags ${esc(cal.flag_names.join(", "))}` : "") +
          ((cal.notes || []).length ? `<ul class="notes">${cal.notes.map((n) => `<li>${esc(n)}</li>`).join("")}</ul>` : "") +
          colourText(cal) +
          (p.job_id ? ` · <a href="/api/jobs/${p.job_id}/diagnostics.png" target="_blank">diagnostics</a> · <a href="/api/jobs/${p.job_id}/log" target="_blank">log</a>` : "")
        : "";
      return `<tr data-id="${p.id}"><td>${fmt(p.mjd, 5)}</td><td>${p.iso}</td><td>${fmt(p.mag, 3)}</td><td>${fmt(p.magerr, 3)}</td>` +
        `<td>${fmt(p.limiting_mag, 2)}</td><td>${esc(p.filter)}</td><td>${esc(p.instrument || "")}</td><td>${esc(p.magsys)}</td>` +
        `<td>${esc(p.origin)}</td><td>${fmt(p.snr, 1)}</td><td class="muted">${details}</td>` +
        `<td class="skyportal-state" data-state="${esc(p.skyportal.state)}">${pushText(p)}</td>` +
        `<td>${p.can_delete ? `<button class="small delete" data-id="${p.id}" data-remote="${p.skyportal.id ?? ""}">Delete</button>` : ""}</td></tr>`;
    }).join("") || `<tr><td colspan="13" class="muted">No photometry yet.</td></tr>`;
    body.querySelectorAll("button.push").forEach((b) => b.addEventListener("click", async () => {
      const response = await fetch(`/api/photometry/${b.dataset.id}/push`, {method: "POST"});
      if (!response.ok) { const e = await response.json(); window.skyphot.notify({failure: true, html: esc(e.error.message)}); }
      loadPhotometry();
    }));
    body.querySelectorAll("button.delete").forEach((b) => b.addEventListener("click", async () => {
      if (!window.confirm("Delete this photometry point?")) return;
      const remote = b.dataset.remote && window.confirm(`Also delete it in SkyPortal (photometry ${b.dataset.remote})?`);
      const response = await fetch(`/api/photometry/${b.dataset.id}${remote ? "?skyportal=true" : ""}`, {method: "DELETE"});
      if (!response.ok) { const e = await response.json(); window.skyphot.notify({failure: true, html: esc(e.error.message)}); }
      loadPhotometry();
    }));
    document.querySelectorAll("#photometry-table th[data-key]").forEach((th) => {
      th.classList.toggle("sorted-asc", th.dataset.key === sortKey && sortDir === 1);
      th.classList.toggle("sorted-desc", th.dataset.key === sortKey && sortDir === -1);
    });
  }

  async function loadPhotometry() {
    const response = await fetch(`/api/sources/${encodeURIComponent(sourceId)}/photometry`);
    if (!response.ok) return;
    points = await response.json();
    drawToggles(); drawPlot(); drawTable();
    document.body.dataset.points = String(points.length);
  }

  async function loadJobs() {
    const response = await fetch(`/api/sources/${encodeURIComponent(sourceId)}/jobs`);
    if (!response.ok) return;
    const jobs = await response.json();
    const body = document.querySelector("#jobs-table tbody");
    body.innerHTML = jobs.map((j) => {
      const state = j.state === "running" && j.stage ? `running: ${esc(j.stage)}` : j.state;
      const links = `<a href="${j.log_url}" target="_blank">log</a>` + (j.diagnostics_url ? ` · <a href="${j.diagnostics_url}" target="_blank">diagnostics</a>` : "");
      const retry = j.state === "failed" ? `<button class="small retry" data-id="${j.id}">Retry</button>` : "";
      return `<tr data-job="${j.id}"><td>${j.id}</td><td>${esc(j.filename)}</td><td class="state-${j.state}">${state}</td>` +
        `<td>${esc(j.message || "")}</td><td>${links}</td><td>${retry}</td></tr>`;
    }).join("") || `<tr><td colspan="6" class="muted">No analyses yet.</td></tr>`;
    body.querySelectorAll("button.retry").forEach((b) => b.addEventListener("click", async () => {
      await window.skyphot.retryJob(b.dataset.id); loadJobs();
    }));
  }

  document.querySelectorAll("#photometry-table th[data-key]").forEach((th) => th.addEventListener("click", () => {
    sortDir = sortKey === th.dataset.key ? -sortDir : 1; sortKey = th.dataset.key; drawTable();
  }));
  document.querySelectorAll("button.toggle").forEach((b) => b.addEventListener("click", () => {
    view = b.dataset.view;
    document.querySelectorAll("button.toggle").forEach((o) => o.classList.toggle("active", o === b));
    drawPlot();
  }));
  window.addEventListener("skyphot:job", (event) => {
    const job = event.detail;
    if (job.source_id !== sourceId) return;
    loadJobs();
    if (job.state === "succeeded") loadPhotometry();
  });
  loadPhotometry(); loadJobs();
})();
