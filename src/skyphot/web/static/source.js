// Source page: light curve (Plotly), jobs and the photometry table; refreshed live.
"use strict";
(function () {
  const root = document.getElementById("source");
  const sourceId = root.dataset.sourceId;
  const skyportal = root.dataset.skyportal === "true";
  const esc = window.skyphot.escapeHtml;
  const api = window.skyphot.api;
  // One colour per band family (r, sdssr, r', ztf_r are all "r"); markers tell instruments apart.
  const FAMILY_COLORS = {u: "#6a3d9a", g: "#1b9e3e", r: "#d62728", i: "#ff7f0e", z: "#8c564b", y: "#5b5b5b",
    U: "#6a3d9a", B: "#1f5fd1", V: "#2ca02c", R: "#e41a1c", I: "#b15928", J: "#17becf", H: "#7f7f7f", K: "#bcbd22",
    c: "#00a6a6", o: "#ff9f1c", w: "#444444", L: "#666666", G: "#3b7dd8"};
  const PALETTE = ["#1f77b4", "#9467bd", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
  const SYMBOLS = ["circle", "square", "diamond", "cross", "x", "star", "pentagon", "hexagon", "triangle-up"];
  const FAMILY_NAMES = {c: "ATLAS c", o: "ATLAS o", w: "w", L: "clear", G: "Gaia G"};
  let points = [];
  let view = "mag";
  const hidden = new Set();
  let sortKey = "mjd", sortDir = 1;

  function family(filter) {
    const short = String(filter).replace(/^(sdss|ps1|ps|ztf|atlas|decam|des|lsst|gaia|sm|skymapper|bessell|johnson|cousins|2mass|mko)[_\-.]?/i, "")
      .replace(/['′]$/, "").replace(/(mag|band)$/i, "");
    if (FAMILY_COLORS[short]) return short;
    const lower = short.toLowerCase();
    if (["u", "g", "r", "i", "z", "y"].includes(lower) && short.length === 1) return lower;
    return short || filter;
  }
  // Shade a hex colour: k > 0 lighter, k < 0 darker (a second filter of the same family).
  function shade(hex, k) {
    const n = parseInt(hex.slice(1), 16);
    const mix = (c) => Math.round(k >= 0 ? c + (255 - c) * k : c * (1 + k));
    const r = mix((n >> 16) & 255), g = mix((n >> 8) & 255), b = mix(n & 255);
    return `#${((1 << 24) + (r << 16) + (g << 8) + b).toString(16).slice(1)}`;
  }
  function styles() {
    // Stable assignments from the sorted filters and instruments of the current points.
    const filters = [...new Set(points.map((p) => p.filter))].sort();
    const instruments = [...new Set(points.map((p) => p.instrument || "?"))].sort();
    const families = [...new Set(filters.map(family))];
    const byFamily = {};
    const color = {};
    filters.forEach((f) => {
      const fam = family(f);
      byFamily[fam] = (byFamily[fam] || 0) + 1;
      const base = FAMILY_COLORS[fam] || PALETTE[families.indexOf(fam) % PALETTE.length];
      const k = [0, -0.35, 0.35, -0.55, 0.55][(byFamily[fam] - 1) % 5];
      color[f] = k === 0 ? base : shade(base, k);
    });
    const symbol = {};
    instruments.forEach((name, index) => { symbol[name] = SYMBOLS[index % SYMBOLS.length]; });
    return {filters, instruments, color, symbol};
  }
  const fmt = (v, digits) => (v === null || v === undefined ? "" : Number(v).toFixed(digits));
  const mjdToDate = (mjd) => new Date((mjd - 40587) * 86400000).toISOString().replace("Z", "");

  function hover(p) {
    const what = p.mag !== null ? `${esc(p.filter)} = ${fmt(p.mag, 3)} ± ${fmt(p.magerr, 3)} (${esc(p.magsys)})`
      : `${esc(p.filter)} > ${fmt(p.limiting_mag, 2)} (${fmt(p.limit_sigma, 0)}σ limit, ${esc(p.magsys)})`;
    return `${what}<br>MJD ${fmt(p.mjd, 5)} (${p.iso})<br>flux ${fmt(p.flux, 2)} ± ${fmt(p.fluxerr, 2)} µJy` +
      `<br>instrument: ${esc(p.instrument || "?")}<br>origin: ${esc(p.origin)}`;
  }

  function drawPlot() {
    const div = document.getElementById("lightcurve");
    const empty = document.getElementById("plot-empty");
    if (!points.length) {
      // Remove the last drawn point too: an empty light curve must look empty.
      if (window.Plotly && div.data) window.Plotly.purge(div);
      if (empty) { empty.hidden = false; if (!div.contains(empty)) div.appendChild(empty); }
      div.dataset.traces = "0";
      return;
    }
    if (empty) empty.hidden = true;
    const st = styles();
    const traces = [];
    const series = [...new Set(points.map((p) => `${p.filter}\u0000${p.instrument || "?"}`))].sort();
    series.forEach((key) => {
      const [filter, instrument] = key.split("\u0000");
      const color = st.color[filter];
      const symbol = st.symbol[instrument];
      const visible = hidden.has(filter) ? "legendonly" : true;
      const mine = points.filter((p) => p.filter === filter && (p.instrument || "?") === instrument);
      const name = `${filter} · ${instrument}`;
      if (view === "mag") {
        const det = mine.filter((p) => p.mag !== null);
        const lim = mine.filter((p) => p.mag === null && p.limiting_mag !== null);
        if (det.length) {
          traces.push({x: det.map((p) => mjdToDate(p.mjd)), y: det.map((p) => p.mag), name, legendgroup: key,
            mode: "markers", type: "scatter", visible, marker: {color, size: 9, symbol},
            error_y: {type: "data", array: det.map((p) => p.magerr), visible: true, color},
            text: det.map(hover), hoverinfo: "text"});
        }
        if (lim.length) {
          traces.push({x: lim.map((p) => mjdToDate(p.mjd)), y: lim.map((p) => p.limiting_mag), name: `${name} (upper limit)`,
            legendgroup: key, mode: "markers", type: "scatter", visible,
            marker: {color, size: 11, symbol: "triangle-down-open", line: {width: 2}}, text: lim.map(hover), hoverinfo: "text"});
        }
      } else {
        const all = mine.filter((p) => p.flux !== null);
        traces.push({x: all.map((p) => mjdToDate(p.mjd)), y: all.map((p) => p.flux), name, legendgroup: key,
          mode: "markers", type: "scatter", visible, marker: {color, size: 9, symbol},
          error_y: {type: "data", array: all.map((p) => p.fluxerr), visible: true, color},
          text: all.map(hover), hoverinfo: "text"});
      }
    });
    // Keep at least two days on the time axis so a single night is not zoomed to milliseconds.
    const mjds = points.map((p) => p.mjd);
    let lo = Math.min(...mjds), hi = Math.max(...mjds);
    const pad = Math.max(1, (hi - lo) * 0.05);
    lo -= pad; hi += pad;
    const dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    const ink = dark ? "#e3e7ef" : "#1d2330", grid = dark ? "#2c3442" : "#e6e9f0";
    const magsys = [...new Set(points.map((p) => p.magsys))].join("/");
    const layout = {margin: {t: 20, r: 20, b: 50, l: 60}, hovermode: "closest", legend: {orientation: "h", y: -0.2},
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: {color: ink},
      xaxis: {title: {text: `Date (UTC) — MJD ${lo.toFixed(1)} to ${hi.toFixed(1)}`}, type: "date", range: [mjdToDate(lo), mjdToDate(hi)], gridcolor: grid},
      yaxis: view === "mag" ? {title: {text: `Magnitude (${magsys})`}, autorange: "reversed", gridcolor: grid}
        : {title: {text: "Flux (µJy)"}, zeroline: true, gridcolor: grid}};
    window.Plotly.react(div, traces, layout, {displaylogo: false, responsive: true});
    div.dataset.traces = String(traces.length);
  }

  function drawToggles() {
    const box = document.getElementById("filter-toggles");
    const st = styles();
    box.innerHTML = st.filters.map((f) => `<label class="inline"><input type="checkbox" data-filter="${esc(f)}" ${hidden.has(f) ? "" : "checked"}>` +
      `<span style="color:${st.color[f]}">●</span> ${esc(f)}</label>`).join("") +
      (st.instruments.length > 1 ? `<span class="hint">Markers: ${st.instruments.map((i) => `${esc(i)} ${esc(st.symbol[i])}`).join(", ")}</span>` : "");
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

  function details(p) {
    const cal = p.calibration || {};
    const parts = [];
    if (p.origin === "skyphot") {
      const ct = cal.color_term === null || cal.color_term === undefined ? "–" : fmt(cal.color_term, 3);
      parts.push(`catalog ${esc(cal.catalog)}, ZP ${fmt(cal.zero_point, 3)} ± ${fmt(cal.zero_point_err, 3)}, ` +
        `${cal.n_calib ?? "?"} calibration stars, colour term ${ct}, FWHM ${fmt(cal.fwhm_arcsec, 2)}″`);
    }
    const sub = cal.subtraction;
    if (sub) {
      const band = sub.band_substituted ? ` (band ${esc(sub.template_band)} substituted)` : "";
      parts.push(`<span class="subtraction">difference image against ${esc(sub.template)}${band}; ` +
        `without subtraction ${fmt(sub.science_mag, 3)}</span>`);
    }
    const flags = cal.flag_names || [];
    if (flags.length) parts.push(`flags: ${flags.map((f) => `<span class="flag">${esc(f)}</span>`).join("")}`);
    const notes = [...(cal.notes || []), ...(cal.assumptions || [])];
    if (notes.length) parts.push(`<details class="more"><summary>${notes.length} note(s)</summary><ul>${notes.map((n) => `<li>${esc(n)}</li>`).join("")}</ul></details>`);
    const colour = colourText(cal);
    if (colour) parts.push(colour);
    if (p.comment) parts.push(`comment: ${esc(p.comment)}`);
    if (p.job_id) parts.push(`<a href="/api/jobs/${p.job_id}/diagnostics.png" target="_blank">diagnostics</a> · <a href="/api/jobs/${p.job_id}/log" target="_blank">log</a>`);
    return parts.join("<br>");
  }

  function drawTable() {
    const body = document.querySelector("#photometry-table tbody");
    const rows = [...points].sort((a, b) => {
      const x = a[sortKey], y = b[sortKey];
      if (x === y) return 0; if (x === null) return 1; if (y === null) return -1;
      return (x < y ? -1 : 1) * sortDir;
    });
    body.innerHTML = rows.map((p) => `<tr data-id="${p.id}"><td>${fmt(p.mjd, 5)}</td><td>${p.iso}</td><td>${fmt(p.mag, 3)}</td><td>${fmt(p.magerr, 3)}</td>` +
        `<td>${fmt(p.limiting_mag, 2)}</td><td>${esc(p.filter)}</td><td>${esc(p.instrument || "")}</td><td>${esc(p.magsys)}</td>` +
        `<td>${esc(p.origin)}</td><td>${fmt(p.snr, 1)}</td><td class="muted details">${details(p)}</td>` +
        `<td class="skyportal-state" data-state="${esc(p.skyportal.state)}">${pushText(p)}</td>` +
        `<td>${p.can_delete ? `<button class="small edit" data-id="${p.id}">Edit</button> <button class="small delete danger" data-id="${p.id}" data-remote="${p.skyportal.id ?? ""}">Delete</button>` : ""}</td></tr>`
    ).join("") || `<tr><td colspan="13" class="muted">No photometry yet.</td></tr>`;
    body.querySelectorAll("button.push").forEach((b) => b.addEventListener("click", async () => {
      const response = await fetch(`/api/photometry/${b.dataset.id}/push`, {method: "POST"});
      if (!response.ok) { const e = await response.json(); window.skyphot.notify({failure: true, html: esc(e.error.message)}); }
      loadPhotometry();
    }));
    body.querySelectorAll("button.delete").forEach((b) => b.addEventListener("click", async () => {
      if (!window.confirm("Delete this photometry point? This cannot be undone.")) return;
      const remote = b.dataset.remote && window.confirm(`Also delete it in SkyPortal (photometry ${b.dataset.remote})?`);
      await api(`/api/photometry/${b.dataset.id}${remote ? "?skyportal=true" : ""}`, {method: "DELETE"});
      loadPhotometry();
    }));
    body.querySelectorAll("button.edit").forEach((b) => b.addEventListener("click", () => openEdit(Number(b.dataset.id))));
    document.querySelectorAll("#photometry-table th[data-key]").forEach((th) => {
      th.classList.toggle("sorted-asc", th.dataset.key === sortKey && sortDir === 1);
      th.classList.toggle("sorted-desc", th.dataset.key === sortKey && sortDir === -1);
    });
  }

  const dialog = document.getElementById("edit-point");
  let editing = null;
  function openEdit(id) {
    const p = points.find((q) => q.id === id);
    if (!p) return;
    editing = p;
    document.getElementById("edit-id").textContent = `#${p.id}`;
    document.getElementById("edit-filter").value = p.filter;
    document.getElementById("edit-instrument").value = p.instrument || "";
    document.getElementById("edit-obstime").value = p.iso;
    document.getElementById("edit-comment").value = p.comment || "";
    document.getElementById("edit-error").textContent = "";
    dialog.showModal();
  }
  document.getElementById("edit-cancel").addEventListener("click", () => dialog.close());
  document.getElementById("edit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {filter: document.getElementById("edit-filter").value.trim(),
      instrument: document.getElementById("edit-instrument").value.trim(),
      comment: document.getElementById("edit-comment").value};
    const time = document.getElementById("edit-obstime").value.trim();
    if (time !== editing.iso) body.obstime = time;
    const result = await api(`/api/photometry/${editing.id}`, {method: "PATCH", json: body, quiet: true});
    if (!result.ok) { document.getElementById("edit-error").textContent = result.error.message; return; }
    dialog.close();
    loadPhotometry();
  });

  // Live refreshes overlap (one per job event): only the newest answer may draw, or a slow
  // earlier one would put back a stale table.
  let photometryCall = 0, jobsCall = 0;

  async function loadPhotometry() {
    const call = ++photometryCall;
    const response = await fetch(`/api/sources/${encodeURIComponent(sourceId)}/photometry`);
    if (!response.ok) return;
    const loaded = await response.json();
    if (call !== photometryCall) return;
    points = loaded;
    drawToggles(); drawPlot(); drawTable();
    document.body.dataset.points = String(points.length);
  }

  // A refresh a busy server drops, or a job event the stream misses, must not leave a job
  // "running" in the table for good: failed refreshes are retried, and while a job is
  // queued or running the table is also re-read every few seconds.
  let jobsTimer = 0, pendingJobs = new Set();
  function loadJobsLater(ms) { clearTimeout(jobsTimer); jobsTimer = setTimeout(loadJobs, ms); }

  async function loadJobs() {
    const call = ++jobsCall;
    let jobs;
    try {
      const response = await fetch(`/api/sources/${encodeURIComponent(sourceId)}/jobs`);
      if (!response.ok) {  // only a busy server's answer (5xx) is worth asking again
        if (response.status >= 500 && call === jobsCall) loadJobsLater(2000);
        return;
      }
      jobs = await response.json();
    } catch (err) {  // the connection dropped: try again
      if (call === jobsCall) loadJobsLater(2000);
      return;
    }
    if (call !== jobsCall) return;
    const body = document.querySelector("#jobs-table tbody");
    body.innerHTML = jobs.map((j) => window.skyphot.jobRow(j, false)).join("") ||
      `<tr><td colspan="6" class="muted">No analyses yet.</td></tr>`;
    window.skyphot.wireJobRows(body, loadJobs);
    // a job found finished by a re-read (its event missed) still brings its point
    if (jobs.some((j) => j.state === "succeeded" && pendingJobs.has(j.id))) loadPhotometry();
    pendingJobs = new Set(jobs.filter((j) => j.state === "queued" || j.state === "running").map((j) => j.id));
    if (pendingJobs.size) loadJobsLater(5000);
  }

  const share = document.getElementById("share-form");
  if (share) share.addEventListener("submit", async (event) => {
    event.preventDefault();
    const groups = [...share.querySelectorAll("input[name=groups]:checked")].map((i) => i.value);
    const result = await api(`/api/sources/${encodeURIComponent(sourceId)}/groups`, {method: "PUT", json: {groups}, quiet: true});
    document.getElementById("share-error").textContent = result.ok ? "" : result.error.message;
    if (result.ok) document.getElementById("source-groups").textContent = result.body.groups.join(", ");
  });
  const deleteSource = document.getElementById("delete-source");
  if (deleteSource) deleteSource.addEventListener("click", async () => {
    if (!window.confirm(`Delete source ${sourceId} with its light curve and jobs? This cannot be undone.`)) return;
    const result = await api(`/api/sources/${encodeURIComponent(sourceId)}`, {method: "DELETE"});
    if (result.ok) window.location.assign("/sources");
  });

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
