// Jobs page: all jobs the user may see, filterable and paged; refreshed live.
"use strict";
(function () {
  const form = document.getElementById("jobs-filter");
  const body = document.querySelector("#all-jobs tbody");
  const LIMIT = 25;
  let offset = 0;
  let call = 0;  // overlapping live refreshes: only the newest answer draws
  const params = new URLSearchParams(window.location.search);
  for (const name of ["state", "source", "q"]) if (params.get(name)) form.elements[name].value = params.get(name);

  async function load() {
    const query = new URLSearchParams({offset: String(offset), limit: String(LIMIT)});
    for (const name of ["state", "source", "q"]) { const v = form.elements[name].value.trim(); if (v) query.set(name, v); }
    const mine = ++call;
    let result;
    try {
      result = await window.skyphot.api(`/api/jobs?${query}`);
    } catch (err) {  // the connection dropped: try again
      if (mine === call) later(2000);
      return;
    }
    if (mine !== call) return;
    // a refresh a busy server drops (5xx) is retried; pending jobs are re-read every few
    // seconds in case the stream misses their end
    if (!result.ok) { if (result.status >= 500) later(2000); return; }
    const page = result.body;
    body.innerHTML = page.jobs.map((j) => window.skyphot.jobRow(j, true)).join("") ||
      `<tr><td colspan="9" class="muted">No jobs match.</td></tr>`;
    window.skyphot.wireJobRows(body, load);
    const last = Math.min(page.offset + page.jobs.length, page.total);
    document.getElementById("jobs-count").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "";
    document.getElementById("jobs-prev").disabled = offset === 0;
    document.getElementById("jobs-next").disabled = last >= page.total;
    document.body.dataset.jobs = String(page.total);
    if (page.jobs.some((j) => j.state === "queued" || j.state === "running")) later(5000);
  }
  let timer = 0;
  function later(ms) { clearTimeout(timer); timer = setTimeout(load, ms); }
  form.addEventListener("submit", (event) => {
    event.preventDefault(); offset = 0;
    const query = new URLSearchParams();
    for (const name of ["state", "source", "q"]) { const v = form.elements[name].value.trim(); if (v) query.set(name, v); }
    window.history.replaceState(null, "", `/jobs${query.toString() ? "?" + query : ""}`);
    load();
  });
  document.getElementById("jobs-prev").addEventListener("click", () => { offset = Math.max(0, offset - LIMIT); load(); });
  document.getElementById("jobs-next").addEventListener("click", () => { offset += LIMIT; load(); });
  window.addEventListener("skyphot:job", () => load());
  load();
})();
