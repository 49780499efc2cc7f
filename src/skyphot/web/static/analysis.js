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

  async function inspect() {
    clearErrors();
    info.hidden = true;
    const file = form.file.files[0];
    if (!file) return;
    const data = new FormData(); data.append("file", file);
    info.hidden = false; info.textContent = "Reading the header…";
    const response = await fetch("/api/fits/inspect", {method: "POST", body: data});
    const body = await response.json();
    if (!response.ok) { info.hidden = true; headerHasTime = false; showError({...body.error, field: body.error.field || "file"}); return; }
    headerHasTime = body.mjd_start !== null;
    const parts = [`Header: ${body.shape.join(" × ")} pixels`];
    parts.push(body.filter ? `filter <strong>${esc(body.filter)}</strong>` : "no filter keyword");
    parts.push(body.instrument ? `instrument <strong>${esc(body.instrument)}</strong>` : "no INSTRUME keyword");
    if (body.exptime) parts.push(`exposure ${body.exptime} s`);
    const when = headerHasTime
      ? `Observation time from the header (${esc(body.time_keyword)}, exposure start): <strong id="header-obstime">${esc(body.obstime)}</strong> UTC, mid-exposure MJD ${body.mjd_mid.toFixed(5)}. Please confirm, or enter another time below.`
      : `<span class="error">The header has no observation time: enter it below.</span>`;
    info.innerHTML = `<p>${parts.join(", ")}.</p><p>${when}</p>`;
    form.filter.placeholder = body.filter ? `${body.filter} (from the header)` : "Required: no filter in the header";
    if (!form.filter.value && body.filter) form.filter.value = body.filter;
    if (body.instrument && !form.instrument.value && instruments.some((i) => i.name === body.instrument)) {
      form.instrument.value = body.instrument; fillFilters();
    }
    form.gain.placeholder = body.gain ? `${body.gain} (header)` : "From the instrument";
    form.saturation.placeholder = body.saturation ? `${body.saturation} (header)` : "From the instrument";
    document.getElementById("obstime-hint").textContent = headerHasTime
      ? "Leave empty to use the header time shown above." : "Required: the header has none.";
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
    if (!headerHasTime && !form.obstime.value.trim()) { showError({field: "obstime", message: "the header has no observation time; enter it (ISO UTC or MJD)"}); return; }
    const data = new FormData(form);
    for (const [key, value] of [...data.entries()]) {
      if (value === "" || (value instanceof File && value.size === 0 && key !== "file")) data.delete(key);
    }
    document.getElementById("submit").disabled = true;
    status.textContent = "Uploading…";
    try {
      const response = await fetch(`/api/sources/${encodeURIComponent(sourceId)}/image_analysis`, {method: "POST", body: data});
      const body = await response.json();
      if (!response.ok) { status.textContent = ""; showError(body.error); return; }
      currentJob = body.job_id;
      showJob({id: body.job_id, state: body.state});
    } finally { document.getElementById("submit").disabled = false; }
  });
  window.addEventListener("skyphot:job", (event) => { if (event.detail.id === currentJob) showJob(event.detail); });
  form.file.addEventListener("change", inspect);
  form.instrument.addEventListener("change", fillFilters);
  fillFilters();
})();
