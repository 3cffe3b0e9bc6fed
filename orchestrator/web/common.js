// Shared helpers of the web view. Everything shown is inserted as text (never as HTML):
// results and errors are user data.
"use strict";

// Auth is the session cookie the login form sets (HttpOnly: no script here ever sees the token,
// and it never goes into a URL); the browser sends it with these same-origin requests.
const Orch = (() => {
  const TERMINAL = ["succeeded", "failed", "canceled"];

  function signIn() {
    location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
  }

  async function api(method, path, body) {
    const headers = {Accept: "application/json"};
    const init = {method, headers, cache: "no-store", credentials: "same-origin"};
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (response.status === 401) signIn();  // a token is set and this browser has not signed in
    const text = await response.text();
    let data = text;
    try { data = text ? JSON.parse(text) : null; } catch (e) { /* not JSON: keep the text */ }
    return {ok: response.ok, status: response.status, statusText: response.statusText, data};
  }

  // el("td", {class: "x"}, "text", childNode): children are text unless they are nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child instanceof Node ? child : text(child));
    return node;
  }

  function text(value) {
    return document.createTextNode(value === null || value === undefined ? "" : String(value));
  }

  function statusClass(status) {
    return "st-" + String(status || "pending").replace(/[^a-z_]/g, "");
  }

  function badge(status) {
    return el("span", {class: "status " + statusClass(status)}, status || "pending");
  }

  function setBadge(node, status) {
    node.className = "status " + statusClass(status);
    node.textContent = status || "";
  }

  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return isNaN(date) ? String(iso) : date.toLocaleString();
  }

  function seconds(start, end) {
    if (!start) return null;
    const from = new Date(start), to = end ? new Date(end) : new Date();
    return Math.max(0, (to - from) / 1000);
  }

  function duration(start, end) {
    const s = seconds(start, end);
    if (s === null) return "";
    if (s < 60) return s.toFixed(2) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
    return (s / 3600).toFixed(1) + " h";
  }

  function json(value, limit) {
    let out = value === undefined ? "" : JSON.stringify(value, null, 2);
    if (limit && out && out.length > limit) out = out.slice(0, limit) + " …";
    return out;
  }

  function show(node, on) { node.hidden = !on; }

  function describe(op, response) {
    const head = op + " → " + response.status + " " + (response.statusText || "");
    return head + "\n" + (typeof response.data === "string" ? response.data : json(response.data));
  }

  return {TERMINAL, signIn, api, el, text, badge, setBadge, statusClass, when, seconds, duration, json,
          show, describe};
})();
