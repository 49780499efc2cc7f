// Image analysis form: header check for confirmation, upload, field errors, live status.
"use strict";
(function () {
  const form = document.getElementById("analysis-form");
  const sourceId = form.dataset.sourceId;
  const esc = window.skyphot.escapeHtml;
  const instruments = JSON.parse(document.getElementById("instruments-data").textContent);
  const info = document.getElementById("header-info");
  const status = document.getElementById("job-status");
  let headerHasTime = true;
  let headerInstrument = null;
  let rejected = null;  // why the chosen file was refused when chosen: that reason stays
  let currentJob = null;

  function clearErrors() {
    form.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; });
    const general = document.getElementById("form-error"); general.hidden = true; general.textContent = "";
  }
  function showError(error) {
    const slot = error.field && form.querySelector(`.field-error[data-field="${error.field}"]`);
    if (slot) { slot.textContent = error.message; return; }
    const general = document.getElementById("form-error"); general.hidden = false; general.textContent = error.message;
  }
  function fillFilters() {
    const chosen = instruments.find((i) => i.name === form.instrument.value);
    document.getElementById("filter-options").innerHTML = (chosen ? chosen.filters : [...new Set(instruments.flatMap((i) => i.filters))])
      .map((f) => `<option value="${esc(f)}">`).join("");
  }

  // "add filter g to SimCam" next to the filter field when the instrument lacks it.
  function offerFilter() {
    const box = document.getElementById("add-filter");
    const name = form.instrument.value || headerInstrument;
    const chosen = instruments.find((i) => name && i.name.toLowerCase() === name.toLowerCase());
    const filter = form.filter.value.trim();
    if (!chosen || !filter || !chosen.filters.length || chosen.filters.includes(filter)) { box.hidden = true; return; }
    const button = document.getElementById("add-filter-button");
    button.textContent = `Add filter ${filter} to ${chosen.name}`;
    button.onclick = async () => {
      const result = await window.skyphot.api(`/api/instruments/${chosen.id}`, {method: "PATCH", json: {filters: [...chosen.filters, filter]}, quiet: true});
      if (!result.ok) { showError({field: "filter", message: result.error.message}); return; }
      chosen.filters = result.body.filters;
      box.hidden = true;
      const slot = form.querySelector('.field-error[data-field="filter"]'); if (slot) slot.textContent = "";
      fillFilters();
    };
    box.hidden = false;
  }

  async function inspect() {
    clearErrors();
    rejected = null;
    info.hidden = true;
    const file = form.file.files[0];
    if (!file) return;
    if (file.size > Number(form.dataset.maxBytes)) {
      // Same words as the server's 413, without sending 100 MB to hear them.
      rejected = {field: "file", message: `the upload is larger than the limit of ${form.dataset.maxMb} MB (max_body_size); compress the frame (e.g. .fits.fz) or ask the administrator to raise max_body_size`};
      showError(rejected);
      return;
    }
    const data = new FormData(); data.append("file", file);
    info.hidden = false; info.textContent = "Reading the header…";
    let response;
    try {
      response = await fetch("/api/fits/inspect", {method: "POST", body: data});
    } catch (e) {
      info.hidden = true;
      rejected = {field: "file", message: "the server closed the connection while the file was sent; try again, or compress the frame"};
      showError(rejected);
      return;
    }
    let body;
    try { body = await response.json(); } catch (e) { body = {error: {message: `the server answered ${response.status}`}}; }
    if (!response.ok) {
      info.hidden = true;
      rejected = {...body.error, field: body.error.field || "file"};
      showError(rejected);
      return;
    }
    headerHasTime = body.mjd_start !== null;
    headerInstrument = body.instrument;
    const parts = [`Header: ${body.shape.join(" × ")} pixels`];
    parts.push(body.filter ? `filter <strong>${esc(body.filter)}</strong>` : "no filter keyword");
    parts.push(body.instrument ? `instrument <strong>${esc(body.instrument)}</strong>` : "no INSTRUME keyword");
    if (body.exptime) parts.push(`exposure ${body.exptime} s`);
    const when = headerHasTime
      ? `Exposure started at <strong id="header-obstime">${esc(body.obstime)}</strong> UTC (header: ${esc(body.time_keyword)}); the point will be placed at mid-exposure, MJD ${body.mjd_mid.toFixed(5)}. If that is wrong, type the right time below.`
      : `<span class="error">The header has no observation time: type it below.</span>`;
    info.innerHTML = `<p>${parts.join(", ")}.</p><p>${when}</p>`;
    form.filter.placeholder = body.filter ? `${body.filter} (from the header)` : "Required: no filter in the header";
    if (!form.filter.value && body.filter) form.filter.value = body.filter;
    if (body.instrument && !form.instrument.value && instruments.some((i) => i.name === body.instrument)) {
      form.instrument.value = body.instrument; fillFilters();
    }
    form.gain.placeholder = body.gain ? `${body.gain} (header)` : "From the instrument";
    form.saturation.placeholder = body.saturation ? `${body.saturation} (header)` : "From the instrument";
    document.getElementById("obstime-hint").textContent = headerHasTime
      ? "Leave empty to use the header's time shown above." : "Required: the header has none. Say whether it is the start or the middle of the exposure.";
    offerFilter();
  }

  function showJob(job) {
    const text = job.state === "running" && job.stage ? `running: ${job.stage}` : job.state;
    status.innerHTML = `Job ${job.id}: <span class="state-${job.state}">${esc(text)}</span>` +
      (job.message ? ` — ${esc(job.message)}` : "") +
      (job.state === "succeeded" || job.state === "failed" ? ` · <a href="/source/${encodeURIComponent(sourceId)}">back to the light curve</a>` : "");
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    if (!form.file.files[0]) { showError({field: "file", message: "choose a FITS file to upload (.fits, .fits.fz, .fits.gz)"}); return; }
    if (rejected) { showError(rejected); return; }
    if (!headerHasTime && !form.obstime.value.trim()) { showError({field: "obstime", message: "the header has no observation time; enter it (ISO UTC or MJD)"}); return; }
    const data = new FormData(form);
    for (const [key, value] of [...data.entries()]) {
      if (value === "" || (value instanceof File && value.size === 0 && key !== "file")) data.delete(key);
    }
    if (!data.get("obstime")) data.delete("obstime_ref");
    document.getElementById("submit").disabled = true;
    status.textContent = "Uploading…";
    try {
      const response = await fetch(`/api/sources/${encodeURIComponent(sourceId)}/image_analysis`, {method: "POST", body: data});
      const body = await response.json();
      if (!response.ok) {
        status.textContent = ""; showError(body.error);
        if (body.error.field === "filter") offerFilter();
        return;
      }
      currentJob = body.job_id;
      showJob({id: body.job_id, state: body.state});
    } finally { document.getElementById("submit").disabled = false; }
  });
  window.addEventListener("skyphot:job", (event) => { if (event.detail.id === currentJob) showJob(event.detail); });
  form.file.addEventListener("change", inspect);
  form.instrument.addEventListener("change", () => { fillFilters(); offerFilter(); });
  form.filter.addEventListener("input", offerFilter);
  fillFilters();
  // A file chosen before this script ran (a slow connection, or the browser restoring the
  // form) fired its change event with nobody listening: check it now.
  if (form.file.files.length) inspect();
})();
