// Instruments page: edit and delete through the API.
"use strict";
(function () {
  const dialog = document.getElementById("edit-instrument");
  const form = document.getElementById("instrument-form");
  let current = null;
  document.querySelectorAll("button.edit-instrument").forEach((b) => b.addEventListener("click", () => {
    current = b.closest("tr");
    document.getElementById("ins-name").value = current.dataset.name;
    document.getElementById("ins-filters").value = current.querySelector(".filters").textContent;
    document.getElementById("ins-gain").value = current.querySelector(".gain").textContent;
    document.getElementById("ins-saturation").value = current.querySelector(".saturation").textContent;
    document.getElementById("ins-error").textContent = "";
    dialog.showModal();
  }));
  document.getElementById("ins-cancel").addEventListener("click", () => dialog.close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {name: form.elements.name.value.trim(),
      filters: form.elements.filters.value.split(",").map((f) => f.trim()).filter((f) => f)};
    if (form.elements.gain.value.trim()) body.gain = Number(form.elements.gain.value);
    if (form.elements.saturation.value.trim()) body.saturation = Number(form.elements.saturation.value);
    const result = await window.skyphot.api(`/api/instruments/${current.dataset.id}`, {method: "PATCH", json: body, quiet: true});
    if (!result.ok) { document.getElementById("ins-error").textContent = result.error.message; return; }
    dialog.close();
    window.location.reload();
  });
  document.querySelectorAll("button.delete-instrument").forEach((b) => b.addEventListener("click", async () => {
    const row = b.closest("tr");
    if (!window.confirm(`Delete instrument ${row.dataset.name}?`)) return;
    const result = await window.skyphot.api(`/api/instruments/${row.dataset.id}`, {method: "DELETE"});
    if (result.ok) row.remove();
  }));
})();
