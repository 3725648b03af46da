// The GraphQL explorer: runs an operation with fetch, shows the schema's SDL.
// No framework, no CDN; served by the binary under a content-hashed URL.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("gql");
  if (!form) return;
  const token = $("gql-token");
  token.value = sessionStorage.getItem("basalt.gql.token") || "";
  const headers = () => {
    const h = { "Content-Type": "application/json", Accept: "application/json" };
    if (token.value.trim()) h.Authorization = token.value.trim();
    return h;
  };
  let sdl = "";
  const showSchema = () => {
    const needle = $("gql-find").value.trim().toLowerCase();
    if (!needle) { $("gql-schema").textContent = sdl; return; }
    $("gql-schema").textContent = sdl
      .split(/\n(?=\S)/)
      .filter((block) => block.toLowerCase().includes(needle))
      .join("\n");
  };
  const loadSchema = async () => {
    const res = await fetch("/graphql/schema.graphql", { headers: headers() });
    sdl = res.ok ? await res.text() : "The schema could not be loaded (" + res.status + ").";
    showSchema();
  };
  const run = async () => {
    let variables = {};
    try {
      variables = JSON.parse($("gql-variables").value || "{}");
    } catch (e) {
      $("gql-result").textContent = "Variables are not JSON: " + e.message;
      return;
    }
    sessionStorage.setItem("basalt.gql.token", token.value);
    $("gql-result").textContent = "…";
    const started = performance.now();
    try {
      const res = await fetch("/graphql", {
        method: "POST",
        headers: headers(),
        body: JSON.stringify({ query: $("gql-query").value, variables }),
      });
      const text = await res.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON */ }
      $("gql-result").textContent =
        shown + "\n\n// " + res.status + " in " + Math.round(performance.now() - started) + " ms";
    } catch (e) {
      $("gql-result").textContent = "Request failed: " + e.message;
    }
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); run(); });
  form.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); }
  });
  $("gql-find").addEventListener("input", showSchema);
  token.addEventListener("change", loadSchema);
  loadSchema();
})();
