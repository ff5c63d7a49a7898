// The memory inspector: reads the service's JSON routes and shows them. Every text from the service is untrusted
// (users' turns, insights, summaries): it is only ever set with textContent, never parsed as markup.
"use strict";

const key = new URLSearchParams(location.search).get("code"); // an admin key on Azure, sent as a header
let current = { user: null, data: null };

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function setStatus(text, isError) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

async function call(path, options) {
  const headers = { Accept: "application/json", ...(options && options.body ? { "Content-Type": "application/json" } : {}) };
  if (key) headers["x-functions-key"] = key;
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => null);
  if (!response.ok && !(response.status === 404 && options && options.allow404)) {
    const detail = body && body.error ? `${body.error}: ${body.detail}` : `HTTP ${response.status}`;
    throw new Error(`${path.split("?")[0]}: ${detail}`);
  }
  return { status: response.status, body };
}

function when(value) {
  return value ? new Date(value).toLocaleString() : "";
}

function hashState() {
  const params = new URLSearchParams(location.hash.slice(1));
  return { user: params.get("user"), session: params.get("session") };
}

function setHash(user, session) {
  const params = new URLSearchParams();
  if (user !== null) params.set("user", user);
  if (session) params.set("session", session);
  history.replaceState(null, "", `#${params}`);
}

// -- users and sessions -------------------------------------------------------------------------------------------

function sessionButton(userId, record) {
  const item = el("li");
  const button = el("button", record.session_id);
  button.dataset.session = record.session_id;
  button.addEventListener("click", () => openUser(userId, record.session_id));
  item.append(button, el("span", record.status, `status status-${record.status}`));
  item.append(el("span", ` ${record.turn_count} turn${record.turn_count === 1 ? "" : "s"}`, "meta"));
  return item;
}

function renderUsers(listing) {
  const nav = document.getElementById("users");
  nav.replaceChildren();
  if (!listing.users.length) nav.append(el("p", "No sessions stored yet.", "meta"));
  for (const user of listing.users) {
    const block = el("div", null, "user");
    block.dataset.user = user.user_id;
    const button = el("button", user.user_id);
    button.addEventListener("click", () => openUser(user.user_id, null));
    const sessions = el("ul");
    for (const record of user.sessions) sessions.append(sessionButton(user.user_id, record));
    block.append(button, el("div", `last active ${when(user.last_activity)}`, "meta"), sessions);
    nav.append(block);
  }
  const more = listing.truncated ? " (the most recent; older ones left out)" : "";
  setStatus(`${listing.users.length} users, ${listing.sessions} sessions${more}`);
}

// -- a user: insights and search ------------------------------------------------------------------------------------

function insightRow(insight) {
  const row = el("tr", null, insight.status === "superseded" ? "superseded" : "active");
  const text = el("td", null, "text");
  text.append(el(insight.status === "superseded" ? "s" : "span", insight.text));
  const source = el("td");
  const link = el("button", `session ${insight.source_session_id}`);
  link.addEventListener("click", () => openUser(current.user, insight.source_session_id));
  source.append(link);
  if (insight.source_turns.length) source.append(el("span", `, turns ${insight.source_turns.join(", ")}`));
  const valid = el("td");
  valid.append(el("div", `from ${when(insight.valid_from)}`));
  if (insight.valid_to) valid.append(el("div", `superseded ${when(insight.valid_to)}`, "superseded-at"));
  if (insight.superseded_by) valid.append(el("div", `by ${insight.superseded_by}`, "meta"));
  row.append(text, el("td", `${insight.category} / ${insight.key}`), source, valid);
  return row;
}

function renderInsights(insights) {
  const body = document.querySelector("#insights tbody");
  body.replaceChildren();
  const ordered = [...insights].sort((a, b) => a.valid_from.localeCompare(b.valid_from));
  for (const insight of ordered) body.append(insightRow(insight));
  if (!ordered.length) {
    const row = el("tr");
    const cell = el("td", "No insights yet.", "meta");
    cell.colSpan = 4;
    row.append(cell);
    body.append(row);
  }
}

async function search(event) {
  event.preventDefault();
  const query = document.getElementById("query").value.trim();
  const results = document.getElementById("results");
  results.replaceChildren();
  if (!query || current.user === null) return;
  try {
    const body = JSON.stringify({ user_id: current.user, query, top_k: 10 });
    const { body: answer } = await call("/memory/retrieve", { method: "POST", body });
    const list = el("ol");
    for (const item of answer.items) {
      const entry = el("li");
      entry.append(el("span", item.kind, "kind"), el("span", `score ${item.score.toFixed(4)}`, "meta"));
      const where = item.session_id ? ` · session ${item.session_id}` : "";
      const seqs = item.seqs.length ? ` · turns ${item.seqs.join(", ")}` : "";
      entry.append(el("span", `${where}${seqs} · ${when(item.timestamp)}`, "meta"), el("div", item.text, "message"));
      list.append(entry);
    }
    results.append(el("p", `${answer.items.length} results for “${query}”`, "meta"), list);
  } catch (error) {
    results.append(el("p", error.message, "error"));
  }
}

// -- a session: facts, reflection, summaries, chunks, turns ------------------------------------------------------

function fact(list, term, value) {
  list.append(el("dt", term), el("dd", value));
}

async function reflectionText(userId, sessionId) {
  const query = new URLSearchParams({ user_id: userId, session_id: sessionId });
  const { status, body } = await call(`/sessions/reflection?${query}`, { allow404: true });
  if (status === 404) return "not started";
  let text = `${body.runtimeStatus} (updated ${when(body.lastUpdatedTime)})`;
  const output = body.output;
  if (output && typeof output === "object") {
    const counts = Object.entries(output).filter(([, value]) => typeof value === "number");
    if (counts.length) text += `: ${counts.map(([name, value]) => `${name} ${value}`).join(", ")}`;
  }
  return text;
}

function turnItem(turn) {
  const item = el("li");
  item.dataset.seq = turn.seq;
  item.append(el("div", `#${turn.seq} · ${when(turn.timestamp)} · ${turn.turn_id}`, "meta"));
  const user = el("div", null, "message user-message");
  user.append(el("span", "User:", "who"), el("span", turn.user_message, "text"));
  const agent = el("div", null, "message agent-message");
  agent.append(el("span", "Agent:", "who"), el("span", turn.agent_message, "text"));
  item.append(user, agent);
  return item;
}

async function renderSession(sessionId) {
  const data = current.data;
  const section = document.getElementById("session");
  const record = data.sessions.find((s) => s.session_id === sessionId);
  section.hidden = false;
  document.getElementById("session-title").textContent = `Session ${sessionId}`;
  const facts = document.getElementById("session-facts");
  facts.replaceChildren();
  if (!record) {
    fact(facts, "status", "not stored");
  } else {
    fact(facts, "status", record.status);
    fact(facts, "started", when(record.started_at));
    fact(facts, "last activity", when(record.last_activity));
    if (record.ended_at) fact(facts, "ended", when(record.ended_at));
    fact(facts, "turns", `${record.turn_count} (indexed through ${record.indexed_through}, compacted through ${record.compacted_through})`);
    fact(facts, "reflection", "…");
    const cell = facts.lastElementChild;
    reflectionText(current.user, sessionId).then(
      (text) => { cell.textContent = text; },
      (error) => { cell.textContent = error.message; cell.className = "error"; },
    );
  }
  const summary = data.summaries.find((s) => s.session_id === sessionId);
  document.getElementById("session-summary").textContent = summary ? summary.summary : "(none yet: written by the reflection)";
  document.getElementById("cumulative-summary").textContent = (record && record.cumulative_summary) || "(none yet)";
  const chunks = document.getElementById("chunks");
  chunks.replaceChildren();
  for (const chunk of data.chunks.filter((c) => c.session_id === sessionId).sort((a, b) => a.index - b.index)) {
    const item = el("li");
    item.append(el("div", `turns ${chunk.first_seq}–${chunk.last_seq} · ${when(chunk.timestamp)}`, "meta"), el("div", chunk.summary, "message"));
    chunks.append(item);
  }
  const turns = document.getElementById("turns");
  turns.replaceChildren();
  for (const turn of data.turns.filter((t) => t.session_id === sessionId).sort((a, b) => a.seq - b.seq)) {
    turns.append(turnItem(turn));
  }
}

function markSelected(userId, sessionId) {
  for (const node of document.querySelectorAll("nav .selected")) node.classList.remove("selected");
  for (const block of document.querySelectorAll("nav .user")) {
    if (block.dataset.user !== userId) continue;
    block.classList.add("selected");
    for (const button of block.querySelectorAll("button[data-session]")) {
      if (button.dataset.session === sessionId) button.classList.add("selected");
    }
  }
}

async function openUser(userId, sessionId) {
  setHash(userId, sessionId);
  markSelected(userId, sessionId);
  try {
    if (current.user !== userId || !current.data || !sessionId) {
      const { body } = await call(`/users?${new URLSearchParams({ user_id: userId })}`);
      current = { user: userId, data: body };
      document.getElementById("results").replaceChildren();
    }
    document.getElementById("user").hidden = false;
    const data = current.data;
    const superseded = data.insights.filter((i) => i.status === "superseded").length;
    document.getElementById("user-title").textContent =
      `${userId}: ${data.sessions.length} sessions, ${data.turns.length} turns, ${data.insights.length} insights (${superseded} superseded)`;
    renderInsights(data.insights);
    if (sessionId) await renderSession(sessionId);
    else document.getElementById("session").hidden = true;
  } catch (error) {
    setStatus(error.message, true);
  }
}

async function start() {
  document.getElementById("search").addEventListener("submit", search);
  try {
    const { body } = await call("/inspector/users");
    renderUsers(body);
  } catch (error) {
    setStatus(error.message, true);
    return;
  }
  const state = hashState();
  if (state.user !== null) await openUser(state.user, state.session);
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
