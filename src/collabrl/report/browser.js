"use strict";
/* The conversation browser: text search and filters over thousands of conversations with only
 * one page of rows in the DOM; the open conversation is drawn on demand. For data-engine runs
 * each assistant turn shows its candidates side by side (MR, stderr, per-metric means, source,
 * the chosen one highlighted, judge rationales) and their sampled futures as a tree that is
 * built when expanded. The simulated user's persona, when the run had one, is a filter and
 * is shown with its attributes above the thread. */

const PAGE_SIZE = 50;
const FILTERS = [["system", "System"], ["task", "Task"], ["status", "Status"], ["ended", "Ended"],
  ["satisfied", "Satisfied"], ["persona", "Persona"]];

function searchText(c) {
  const parts = [c.task, c.system || "", c.ended, c.status, c.persona || "",
    ...c.messages.map((m) => m.content)];
  return parts.join("\n").toLowerCase();
}

function snippet(c) {
  const first = c.messages.find((m) => m.role === "user");
  const text = first ? first.content.replace(/\s+/g, " ") : "(no messages)";
  return text.length > 110 ? `${text.slice(0, 109)}…` : text;
}

function messageView(m) {
  return h("div", {class: `msg role-${m.role}`}, h("div", {class: "role"}, m.role),
    h("div", {class: "text"}, m.content));
}

class Browser {
  constructor(run) {
    this.run = run;
    this.all = run.conversations;
    this.shown = this.all;
    this.page = 0;
    this.query = "";
    this.filters = {};
    this.haystack = null;
    this.count = h("p", {class: "conv-count"});
    this.list = h("ol", {class: "conv-list"});
    this.pager = h("div", {class: "pager"});
    this.detail = h("section", {class: "conv-detail card"},
      h("p", {class: "muted"}, "Select a conversation on the left."));
  }

  element() {
    this.renderPage();
    return h("section", {class: "browser"}, h("h2", null, "Conversations"), this.controls(),
      h("div", {class: "browser-body"},
        h("div", {class: "browser-list card"}, this.count, this.list, this.pager), this.detail));
  }

  controls() {
    const search = h("input", {type: "search", class: "conv-search", placeholder: "Search text…",
      "aria-label": "search conversations"});
    let timer = null;
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { this.query = search.value.trim().toLowerCase(); this.apply(); }, 120);
    });
    return h("div", {class: "controls"}, search, FILTERS.map(([key, label]) => this.select(key, label)));
  }

  select(key, label) {
    const values = [...new Set(this.all.map((c) => c[key]).filter((v) => v !== null && v !== undefined)
      .map(String))].sort();
    if (values.length < 2) return null;
    const el = h("select", {"data-filter": key, "aria-label": label},
      h("option", {value: ""}, `${label}: all`), values.map((v) => h("option", {value: v}, v)));
    el.addEventListener("change", () => { this.filters[key] = el.value; this.apply(); });
    return el;
  }

  apply() {
    const q = this.query;
    if (q && !this.haystack) this.haystack = this.all.map(searchText);
    const active = Object.entries(this.filters).filter(([, v]) => v);
    this.shown = this.all.filter((c, i) => active.every(([k, v]) => String(c[k]) === v)
      && (!q || this.haystack[i].includes(q)));
    this.page = 0;
    this.renderPage();
  }

  renderPage() {
    const pages = Math.max(1, Math.ceil(this.shown.length / PAGE_SIZE));
    const start = this.page * PAGE_SIZE;
    this.count.textContent = `${this.shown.length} of ${this.all.length} conversations`;
    this.list.replaceChildren(...this.shown.slice(start, start + PAGE_SIZE).map((c) => this.row(c)));
    const go = (page) => () => { this.page = page; this.renderPage(); };
    this.pager.replaceChildren(
      h("button", {disabled: this.page === 0, onclick: go(this.page - 1)}, "‹ prev"),
      h("span", null, `page ${this.page + 1} of ${pages}`),
      h("button", {disabled: this.page >= pages - 1, onclick: go(this.page + 1)}, "next ›"));
  }

  row(c) {
    const who = c.system === null ? c.task : `${c.system} · ${c.task} · seed ${c.seed}`;
    const score = c.score === undefined || c.score === null ? null : badge(`score ${fmt(c.score, 2)}`, "");
    const li = h("li", {class: "conv-row", "data-id": c.id, tabindex: 0},
      h("div", {class: "conv-who"}, who),
      h("div", {class: "conv-badges"}, badge(c.status, c.status), badge(c.ended, "ended"),
        c.satisfied ? badge("satisfied", "ok") : null, score, badge(`${c.turns} turns`, "")),
      h("div", {class: "conv-snippet"}, snippet(c)));
    const open = () => {
      this.list.querySelectorAll(".active").forEach((el) => el.classList.remove("active"));
      li.classList.add("active");
      this.open(c);
    };
    li.addEventListener("click", open);
    li.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
    return li;
  }

  open(c) {
    const title = c.system === null ? c.task : `${c.system} · ${c.task} · seed ${c.seed}`;
    this.detail.replaceChildren(h("h3", null, title), this.facts(c), personaView(c),
      h("div", {class: "thread"}, this.thread(c)));
    this.detail.scrollTop = 0;
  }

  facts(c) {
    const rows = c.system === null
      ? [["status", c.status], ["ended", c.ended], ["reason", c.reason], ["turns", c.turns],
        ["scored turns", c.steps.length]]
      : [["task metric", c.metric], ["score", fmt(c.score, 3)], ["score note", c.score_reason],
        ["ITR grade", fmt(c.itr, 1)], ["ITR note", c.itr_reason], ["assistant tokens", c.tokens],
        ["turns", c.turns], ["ended", c.ended], ["satisfied", c.satisfied ? "yes" : "no"],
        ["error", c.error], ["flags", c.flags.join(", ")]];
    return h("dl", {class: "facts"}, rows.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .map(([k, v]) => [h("dt", null, k), h("dd", null, v)]));
  }

  /* Messages in order; an assistant message produced by a scored turn is shown as that turn's
   * candidates. Turns past the transcript's end (a failed turn) come last. */
  thread(c) {
    const steps = new Map((c.steps || []).map((s) => [s.at, s]));
    const out = c.messages.map((m, i) => {
      const step = m.role === "assistant" ? steps.get(i) : undefined;
      if (!step) return messageView(m);
      steps.delete(i);
      return turnPanel(step);
    });
    return out.concat([...steps.values()].map(turnPanel));
  }
}

/* The simulated user's persona: its name and summary, its other attributes on demand. */
function personaView(c) {
  const p = c.persona_traits;
  if (!p) return null;
  const rest = Object.entries(p).filter(([k]) => k !== "name" && k !== "summary");
  return h("div", {class: "persona small"}, h("strong", null, `persona: ${p.name}`),
    p.summary ? [" · ", p.summary] : null,
    rest.length ? lazyDetails("attributes", () => h("dl", {class: "facts"},
      rest.map(([k, v]) => [h("dt", null, k), h("dd", null, String(v))]))) : null);
}

function turnPanel(step) {
  const chosen = step.chosen === null ? "none scored" : `chosen #${step.chosen + 1}`;
  return h("div", {class: "turn"},
    h("div", {class: "turn-head"}, `assistant turn ${step.turn + 1} · ${step.candidates.length} candidates · ${chosen}`),
    h("div", {class: "candidates"}, step.candidates.map((c, i) => candidateCard(c, i, i === step.chosen))));
}

function candidateCard(c, index, chosen) {
  const means = Object.entries(c.metric_means);
  const samples = c.sample_rewards.length;
  return h("article", {class: `candidate${chosen ? " chosen" : ""}`, "data-index": index},
    h("header", null, h("span", {class: "cand-index"}, `#${index + 1}`), badge(c.source, c.source),
      chosen ? badge("chosen", "ok") : null,
      h("span", {class: "mr", title: "multiturn-aware reward ± standard error"},
        `MR ${fmt(c.mr, 3)}`, h("small", null, ` ± ${fmt(c.stderr, 3)}`))),
    means.length ? h("table", {class: "metric-means"}, means.map(([k, v]) =>
      h("tr", null, h("td", null, k), h("td", {class: "num"}, fmt(v, 3))))) : null,
    h("div", {class: "muted small"}, `${samples - c.unscored} of ${samples} futures scored`,
      c.stopped ? ` · sampling stopped: ${c.stopped}` : ""),
    h("div", {class: "text cand-text"}, c.text),
    rationales(c),
    c.futures === null
      ? h("div", {class: "muted small"}, "futures not kept (generate.keep_futures=false)")
      : lazyDetails(`sampled futures (${c.futures.length})`, () => futuresTree(c.futures),
        {class: "futures"}));
}

/* The judges' raw texts behind this candidate's scores, identical texts merged. */
function rationales(c) {
  const merged = new Map();
  for (const f of c.futures || []) {
    for (const [metric, score] of Object.entries(f.scores)) {
      for (const raw of score.raw) {
        const key = `${metric}\u0000${raw}`;
        if (!merged.has(key)) merged.set(key, {metric, raw, futures: []});
        merged.get(key).futures.push(f.index + 1);
      }
    }
  }
  const reasons = c.reasons.filter(Boolean);
  if (!merged.size && !reasons.length) return null;
  return lazyDetails(`judge rationales (${merged.size})`, () => h("div", {class: "rationales"},
    [...merged.values()].map((r) => h("div", {class: "rationale"},
      h("div", {class: "small muted"}, `${r.metric} · future ${r.futures.join(", ")}`),
      h("div", {class: "text"}, r.raw))),
    reasons.length ? h("div", {class: "small muted"}, `unscored: ${reasons.join("; ")}`) : null),
  {class: "rationale-box"});
}

function futuresTree(futures) {
  return h("ol", {class: "future-list"}, futures.map((f) => h("li", {class: "future"},
    lazyDetails([`future ${f.index + 1} · `, badge(f.ended, "ended"), ` · reward ${fmt(f.reward, 3)}`,
      f.reason ? ` · ${f.reason}` : ""], () => futureBody(f), {class: "future-node"}))));
}

function futureBody(f) {
  const scores = Object.entries(f.scores);
  return h("div", {class: "future-body"},
    f.added.length ? f.added.map(messageView) : h("p", {class: "muted"}, "no messages added"),
    f.closing ? h("div", {class: "small muted"}, "user closed with: ", h("q", null, f.closing)) : null,
    f.error ? h("div", {class: "error small"}, `error: ${f.error}`) : null,
    scores.length ? h("table", {class: "scores"},
      h("tr", null, ["metric", "value", "reason", "judge text"].map((t) => h("th", null, t))),
      scores.map(([metric, s]) => h("tr", null, h("td", null, metric), h("td", {class: "num"}, fmt(s.value, 3)),
        h("td", null, s.reason || ""), h("td", null, s.raw.map((r) => h("div", {class: "text"}, r))))))
      : null);
}
