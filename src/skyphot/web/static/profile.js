// Profile page: revoke tokens, group membership, create users (admin).
"use strict";
(function () {
  const {api, escapeHtml: esc} = window.skyphot;
  const me = document.body.dataset.user;
  document.querySelectorAll("button.revoke-token").forEach((b) => b.addEventListener("click", async () => {
    if (!window.confirm("Revoke this token? Scripts using it will stop working.")) return;
    const result = await api(`/api/tokens/${b.dataset.id}`, {method: "DELETE"});
    if (result.ok) b.closest("tr").remove();
  }));

  async function loadGroups() {
    const result = await api("/api/groups");
    if (!result.ok) return;
    const box = document.getElementById("groups");
    box.innerHTML = `<div class="scroll"><table class="data" id="groups-table"><thead><tr><th>Group</th><th>Members</th></tr></thead><tbody>` +
      result.body.map((g) => `<tr data-group="${esc(g.name)}"><td>${esc(g.name)}</td><td>` +
        g.members.map((m) => `${esc(m)}${g.name.startsWith("user:") ? "" : ` <button type="button" class="small link remove-member" data-group="${esc(g.name)}" data-user="${esc(m)}" title="remove ${esc(m)}">✕</button>`}`).join(", ") +
        `</td></tr>`).join("") + `</tbody></table></div>`;
    box.querySelectorAll("button.remove-member").forEach((b) => b.addEventListener("click", async () => {
      const who = b.dataset.user === me ? "yourself" : b.dataset.user;
      if (!window.confirm(`Remove ${who} from ${b.dataset.group}?`)) return;
      const r = await api(`/api/groups/${encodeURIComponent(b.dataset.group)}/members/${encodeURIComponent(b.dataset.user)}`, {method: "DELETE"});
      if (r.ok) loadGroups();
    }));
  }
  document.getElementById("member-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = event.target.elements;
    const r = await api(`/api/groups/${encodeURIComponent(f.group.value.trim())}/members`, {method: "POST", json: {username: f.username.value.trim()}, quiet: true});
    document.getElementById("member-error").textContent = r.ok ? "" : r.error.message;
    if (r.ok) { event.target.reset(); loadGroups(); }
  });
  const userForm = document.getElementById("user-form");
  if (userForm) userForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = userForm.elements;
    const body = {username: f.username.value.trim(), password: f.password.value, is_admin: f.is_admin.checked,
      groups: f.groups.value.split(",").map((g) => g.trim()).filter((g) => g)};
    const r = await api("/api/users", {method: "POST", json: body, quiet: true});
    const out = document.getElementById("user-result");
    if (!r.ok) { out.className = "wide error"; out.textContent = r.error.message; return; }
    out.className = "wide";
    out.innerHTML = `Created <strong>${esc(r.body.username)}</strong>; API token (shown once): <code>${esc(r.body.token)}</code>`;
    userForm.reset(); loadGroups();
  });
  loadGroups();
})();
