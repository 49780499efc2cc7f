// Shared by every page of a logged-in user: live notifications (server-sent events), API calls,
// job rows with Retry (and changed settings).
"use strict";
(function () {
  const box = document.getElementById("notifications");
  const announced = new Set();

  function escapeHtml(text) {
    return String(text ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  }

  // fetch() for the JSON API: {ok, status, body, error}; errors are shown unless quiet.
  async function api(url, {method = "GET", json = undefined, quiet = false} = {}) {
    const init = {method, headers: {}};
    if (json !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(json); }
    const response = await fetch(url, init);
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    const error = response.ok ? null : ((body && body.error) || {message: `the server answered ${response.status}`});
    if (error && !quiet) notify({failure: true, html: escapeHtml(error.message)});
    return {ok: response.ok, status: response.status, body, error};
  }

  // The retry form: the same kept upload, optionally with another time, filter, catalog...
  function retryDialog(job) {
    return new Promise((resolve) => {
      const dialog = document.createElement("dialog");
      dialog.id = "retry-dialog";
      const p = job.params || {};
      dialog.innerHTML = `<form method="dialog" class="grid">
        <h2 class="wide">Retry job ${job.id}</h2>
        <p class="wide hint">Runs the analysis again on the file already uploaded. Change what the failure asks for; empty fields keep the earlier value.</p>
        <label>Observation time (UTC, ISO or MJD)<input name="obstime" placeholder="unchanged"></label>
        <fieldset><legend>That time is the</legend>
          <label class="inline"><input type="radio" name="obstime_ref" value="mid" checked> mid-exposure</label>
          <label class="inline"><input type="radio" name="obstime_ref" value="start"> exposure start</label></fieldset>
        <label>Filter<input name="filter" placeholder="${escapeHtml(p.filter || "unchanged")}"></label>
        <label>Reference catalog<input name="catalog" placeholder="${escapeHtml(p.catalog || "automatic")}"></label>
        <label>…or a catalog file<input name="catalog_file" type="file" accept=".ecsv,.csv,.fits,.fit,.parquet,.txt,.dat"></label>
        <label>Pixel scale (″/px)<input name="pixel_scale" type="number" step="any" min="0" placeholder="${escapeHtml(p.pixel_scale || "unchanged")}"></label>
        <label>Target colour (g-r=0.3 or 0.3)<input name="target_color" placeholder="unchanged"></label>
        <p class="error wide" id="retry-error"></p>
        <div class="wide row"><button class="primary" value="go" id="retry-go">Retry</button><button value="cancel" type="button" id="retry-cancel">Cancel</button></div>
      </form>`;
      document.body.appendChild(dialog);
      const form = dialog.querySelector("form");
      dialog.querySelector("#retry-cancel").addEventListener("click", () => { dialog.close(); dialog.remove(); resolve(false); });
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const body = {};
        let catalogFile = null;
        for (const [key, value] of new FormData(form).entries()) {
          if (value instanceof File) { if (value.size > 0) catalogFile = value; continue; }
          if (String(value).trim() !== "") body[key] = key === "pixel_scale" ? Number(value) : String(value).trim();
        }
        if (!body.obstime) delete body.obstime_ref;
        if (catalogFile) {
          const data = new FormData(); data.append("catalog_file", catalogFile);
          const response = await fetch(`/api/jobs/${job.id}/catalog_file`, {method: "PUT", body: data});
          if (!response.ok) {
            let message = `the server answered ${response.status}`;
            try { message = (await response.json()).error.message; } catch (e) { /* keep the status */ }
            dialog.querySelector("#retry-error").textContent = message;
            return;
          }
        }
        const result = await api(`/api/jobs/${job.id}/retry`, {method: "POST", json: body, quiet: true});
        if (!result.ok) { dialog.querySelector("#retry-error").textContent = result.error.message; return; }
        dialog.close(); dialog.remove(); resolve(true);
      });
      dialog.showModal();
    });
  }

  async function retryJob(jobOrId) {
    const job = typeof jobOrId === "object" ? jobOrId : {id: jobOrId, params: {}};
    return retryDialog(job);
  }

  function notify({failure, html, job}) {
    const note = document.createElement("div");
    note.className = "notification" + (failure ? " failure" : " success");
    note.innerHTML = `<button class="close" aria-label="Close">×</button>${html}`;
    if (failure && job && job.retryable) {
      const retry = document.createElement("button");
      retry.className = "small retry";
      retry.textContent = "Retry…";
      retry.addEventListener("click", async () => { if (await retryJob(job)) note.remove(); });
      note.appendChild(document.createElement("br"));
      note.appendChild(retry);
    }
    note.querySelector(".close").addEventListener("click", () => note.remove());
    box.appendChild(note);
    if (!failure) setTimeout(() => note.remove(), 15000);
  }

  // One row of a jobs table; withSource adds the source and owner columns (jobs page).
  function jobRow(j, withSource) {
    const state = j.state === "running" && j.stage ? `running: ${escapeHtml(j.stage)}` : j.state;
    const links = `<a href="${j.log_url}" target="_blank">log</a>` + (j.diagnostics_url ? ` · <a href="${j.diagnostics_url}" target="_blank">diagnostics</a>` : "");
    const actions = (j.retryable ? `<button class="small retry" data-id="${j.id}">Retry…</button> ` : "") +
      (j.state === "failed" && j.can_delete !== false ? `<button class="small delete-job danger" data-id="${j.id}">Delete</button>` : "");
    const when = (j.finished_at || j.created_at || "").replace("T", " ").slice(0, 19);
    const source = withSource ? `<td><a href="/source/${encodeURIComponent(j.source_id)}">${escapeHtml(j.source_id)}</a></td><td>${escapeHtml(j.owner || "")}</td><td>${escapeHtml(when)}</td>` : "";
    return `<tr data-job="${j.id}" data-params='${escapeHtml(JSON.stringify(j.params || {}))}'><td>${j.id}</td>${source}<td>${escapeHtml(j.filename)}</td><td class="state-${j.state}">${state}</td>` +
      `<td class="reason">${escapeHtml(j.message || "")}</td><td>${links}</td><td>${actions}</td></tr>`;
  }

  function wireJobRows(body, reload) {
    body.querySelectorAll("button.retry").forEach((b) => b.addEventListener("click", async () => {
      const row = b.closest("tr");
      if (await retryJob({id: Number(b.dataset.id), params: JSON.parse(row.dataset.params || "{}")})) reload();
    }));
    body.querySelectorAll("button.delete-job").forEach((b) => b.addEventListener("click", async () => {
      if (!window.confirm(`Delete failed job ${b.dataset.id} and its uploaded file?`)) return;
      const result = await api(`/api/jobs/${b.dataset.id}`, {method: "DELETE"});
      if (result.ok) reload();
    }));
  }

  function onJob(job) {
    window.dispatchEvent(new CustomEvent("skyphot:job", {detail: job}));
    const key = `${job.id}:${job.state}`;
    if ((job.state !== "succeeded" && job.state !== "failed") || announced.has(key)) return;
    announced.add(key);
    const link = `<a href="/source/${encodeURIComponent(job.source_id)}">${escapeHtml(job.source_id)}</a>`;
    if (job.state === "succeeded") {
      notify({failure: false, html: `<strong>Analysis finished</strong> for ${link} (${escapeHtml(job.filename)}): ${escapeHtml(job.message)}`});
    } else {
      notify({failure: true, job, html: `<strong>Analysis failed</strong> for ${link} (${escapeHtml(job.filename)}): ${escapeHtml(job.message)}`});
    }
  }

  if (window.EventSource) {
    const source = new EventSource("/api/events");
    source.addEventListener("job", (event) => onJob(JSON.parse(event.data)));
    source.addEventListener("open", () => { document.body.dataset.live = "connected"; });
  }
  window.skyphot = {escapeHtml, notify, retryJob, api, jobRow, wireJobRows};
})();
