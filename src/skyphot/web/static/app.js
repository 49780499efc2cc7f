// Live notifications on every page of a logged-in user (server-sent events).
"use strict";
(function () {
  const box = document.getElementById("notifications");
  const announced = new Set();

  function escapeHtml(text) {
    return String(text ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  }

  async function retryJob(jobId) {
    const response = await fetch(`/api/jobs/${jobId}/retry`, {method: "POST"});
    const body = await response.json();
    if (!response.ok) { notify({failure: true, html: escapeHtml(body.error.message)}); }
    return response.ok;
  }

  function notify({failure, html, jobId}) {
    const note = document.createElement("div");
    note.className = "notification" + (failure ? " failure" : " success");
    note.innerHTML = `<button class="close" aria-label="Close">×</button>${html}`;
    if (failure && jobId) {
      const retry = document.createElement("button");
      retry.className = "small retry";
      retry.textContent = "Retry";
      retry.addEventListener("click", async () => { if (await retryJob(jobId)) note.remove(); });
      note.appendChild(document.createElement("br"));
      note.appendChild(retry);
    }
    note.querySelector(".close").addEventListener("click", () => note.remove());
    box.appendChild(note);
    if (!failure) setTimeout(() => note.remove(), 15000);
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
      notify({failure: true, jobId: job.id, html: `<strong>Analysis failed</strong> for ${link} (${escapeHtml(job.filename)}): ${escapeHtml(job.message)}`});
    }
  }

  if (window.EventSource) {
    const source = new EventSource("/api/events");
    source.addEventListener("job", (event) => onJob(JSON.parse(event.data)));
    source.addEventListener("open", () => { document.body.dataset.live = "connected"; });
  }
  window.skyphot = {escapeHtml, notify, retryJob};
})();
