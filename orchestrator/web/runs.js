// The runs list: refreshed every 2 s; a form to start a workflow.
"use strict";

(() => {
  const body = document.querySelector("#runs tbody");
  const filter = document.getElementById("status-filter");
  const updated = document.getElementById("updated");
  const listError = document.getElementById("list-error");
  const startResponse = document.getElementById("start-response");

  function row(run) {
    const link = Orch.el("a", {href: "/runs/" + encodeURIComponent(run.id)}, run.id);
    return Orch.el("tr", {"data-run": run.id},
      Orch.el("td", {class: "id"}, link), Orch.el("td", {}, run.workflow), Orch.el("td", {}, Orch.badge(run.status)),
      Orch.el("td", {class: "time"}, Orch.when(run.created_at)), Orch.el("td", {class: "time"}, Orch.when(run.finished_at)),
      Orch.el("td", {class: "error"}, (run.error || "").slice(0, 200)));
  }

  async function refresh() {
    const query = "/api/runs?limit=100" + (filter.value ? "&status=" + encodeURIComponent(filter.value) : "");
    try {
      const response = await Orch.api("GET", query);
      if (!response.ok) throw new Error(Orch.describe("list", response));
      body.replaceChildren(...response.data.map(row));
      updated.textContent = "updated " + new Date().toLocaleTimeString();
      Orch.show(listError, false);
    } catch (error) {
      listError.textContent = String(error.message || error);
      Orch.show(listError, true);
    }
  }

  document.getElementById("start-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    let params;
    try {
      params = JSON.parse(document.getElementById("start-params").value || "{}");
    } catch (error) {
      startResponse.textContent = "parameters: not valid JSON: " + error.message;
      Orch.show(startResponse, true);
      return;
    }
    const response = await Orch.api("POST", "/api/runs", {workflow: document.getElementById("start-workflow").value, params});
    startResponse.replaceChildren(Orch.text(Orch.describe("start", response)));
    if (response.ok && response.data && response.data.id) {
      startResponse.append(Orch.text("\n"),
        Orch.el("a", {href: "/runs/" + encodeURIComponent(response.data.id)}, "open the run"));
    }
    Orch.show(startResponse, true);
    refresh();
  });

  filter.addEventListener("change", refresh);
  refresh();
  setInterval(refresh, 2000);
})();
