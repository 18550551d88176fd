"use strict";
/* The report page: one tab per run folder, built the first time it is shown. Evaluation runs:
 * the paper's Table 1 with 95% intervals, paired differences marked when within noise, bar
 * charts per figure, task score by conversation length and distributions. Data-engine runs:
 * counts, MR of chosen vs rejected replies, the gap between them, reward by turn. Both end with
 * the conversation browser (browser.js). */

const FIGURE_DIGITS = {score: 1, tokens_k: 2, itr: 1, turns: 2, satisfied: 1};
const LOWER_IS_BETTER = new Set(["tokens_k"]);

function section(title, ...children) {
  return h("section", {class: "section"}, h("h2", null, title), children);
}

function chartCard(title, spec, draw) {
  return h("figure", {class: "card chart-card"}, spec ? draw(spec)
    : [h("div", {class: "chart-title"}, title), h("p", {class: "muted"}, "no data")]);
}

function statTile(label, value, kind) {
  return h("div", {class: `tile ${kind || ""}`}, h("div", {class: "tile-value"}, value),
    h("div", {class: "tile-label"}, label));
}

/* --- evaluation runs ------------------------------------------------------------------- */

function bestRows(rows, index, figure) {
  const means = rows.map((r) => (r.cells[index].estimate ? r.cells[index].estimate.mean : null));
  const known = means.filter((m) => m !== null);
  if (new Set(known).size < 2) return new Set();
  const best = LOWER_IS_BETTER.has(figure) ? Math.min(...known) : Math.max(...known);
  return new Set(means.flatMap((m, i) => (m === best ? [i] : [])));
}

function estimateCell(cell, column, best) {
  const e = cell.estimate;
  const title = e ? `n=${e.n}; ${cell.unscored} of ${cell.conversations} unscored`
    : `no value (${cell.unscored || 0} of ${cell.conversations} unscored)`;
  return h("td", {class: `num${best ? " best" : ""}`, title, "data-figure": column.figure},
    h("div", {class: "mean"}, e ? fmt(e.mean, column.digits) : "–"),
    h("div", {class: "ci"}, fmtInterval(e, column.digits)));
}

function summaryTable(run) {
  const {groups, columns, rows} = run.table;
  const best = rows.length ? rows[0].cells.map((_, i) => bestRows(rows, i, columns[i % columns.length].figure)) : [];
  return h("table", {class: "summary-table"},
    h("thead", null,
      h("tr", null, h("th", {rowspan: 2}, "System"),
        groups.map((g) => h("th", {colspan: columns.length, class: "group"}, g.label))),
      h("tr", null, groups.map(() => columns.map((c) => h("th", null, c.label))))),
    h("tbody", null, rows.map((r, k) => h("tr", {"data-system": r.system},
      h("th", {class: "system"}, r.system),
      r.cells.map((cell, i) => estimateCell(cell, columns[i % columns.length], best[i].has(k)))))));
}

function pairedTable(run) {
  if (!run.paired.length) return h("p", {class: "muted"}, "Only one system: nothing to compare.");
  return h("table", {class: "paired-table"},
    h("tr", null, ["task metric", "figure", "comparison", "difference [95% CI]", "pairs", ""].map((t) => h("th", null, t))),
    run.paired.map((d) => {
      const digits = FIGURE_DIGITS[d.figure] ?? 2;
      const direction = d.mean > 0 ? "higher" : "lower";
      return h("tr", {class: d.within_noise ? "noise" : "signal"}, h("td", null, d.group),
        h("td", null, d.label), h("td", null, `${d.a} − ${d.b}`),
        h("td", {class: "num"}, `${d.mean >= 0 ? "+" : ""}${fmt(d.mean, digits)} `,
          h("span", {class: "ci"}, `[${fmt(d.low, digits)}, ${fmt(d.high, digits)}]`)),
        h("td", {class: "num"}, d.n),
        h("td", null, d.within_noise ? badge("within noise", "noise") : badge(`${direction}`, direction)));
    }));
}

function evalView(run) {
  const color = colorFor(run.systems);
  const c = run.counts;
  const plots = run.plots;
  return [
    section("Summary",
      h("p", {class: "note"}, "Means with 95% bootstrap intervals (from summary.json); best per column in bold. ",
        "Hover a cell for n and unscored counts."),
      h("div", {class: "table-wrap"}, summaryTable(run)),
      h("div", {class: "tiles"}, statTile("conversations", c.conversations),
        statTile("failed", c.failed, c.failed ? "bad" : ""), statTile("satisfied", c.satisfied),
        statTile("score unscored", c.score_unscored), statTile("ITR unscored", c.itr_unscored),
        statTile("replies cut by length", c.cut_replies, c.cut_replies ? "bad" : "")),
      h("div", {class: "small"}, "ended: ", countsList(c.ended), " failure reasons: ",
        countsList(c.failure_reasons), " flags: ", countsList(c.flags))),
    section(`Paired differences (same tasks and seeds) against ${run.systems[0] || "the baseline"}`,
      h("div", {class: "table-wrap"}, pairedTable(run))),
    section("Figures per system", h("div", {class: "chart-grid"},
      run.figures.map((f) => chartCard(f.title, f.bars, (bars) => barChart(f.title, bars, color))))),
    section("Score by conversation length and distributions", h("div", {class: "chart-grid"},
      chartCard("Task score by turns", plots.score_by_turns,
        (s) => lineChart("Task score (%) by conversation length", s, color, "assistant turns", "score (%)")),
      chartCard("Assistant tokens", plots.tokens, (s) => histChart("Assistant tokens", s, color, "tokens")),
      chartCard("Turns", plots.turns, (s) => histChart("Turns per conversation", s, color, "turns")),
      chartCard("ITR", plots.itr, (s) => histChart("Interactivity (ITR)", s, color, "ITR")))),
    new Browser(run).element(),
  ];
}

/* --- data-engine runs ------------------------------------------------------------------ */

function sourceShares(c) {
  return Object.entries(c.candidates_by_source).map(([source, n]) => {
    const chosen = c.chosen_by_source[source] || 0;
    return h("li", null, `${source}: ${n} candidates, chosen ${chosen} (${fmt((100 * chosen) / n, 0)}%)`);
  });
}

function generateView(run) {
  const c = run.counts;
  const p = run.plots;
  const color = colorFor(["chosen", "rejected"]);
  const metricColor = colorFor(p.metrics_by_turn ? p.metrics_by_turn.series.map((s) => s.name) : []);
  return [
    section("Counts",
      h("div", {class: "tiles"}, statTile("conversations", c.conversations), statTile("ok", c.ok, "good"),
        statTile("failed", c.failed, c.failed ? "bad" : ""), statTile("unfinished", c.unfinished),
        statTile("scored turns", c.turns), statTile("turns without choice", c.turns_without_choice),
        statTile("candidates", c.candidates), statTile("unscored candidates", c.candidates_unscored),
        statTile("futures", c.futures), statTile("unscored futures", c.futures_unscored),
        statTile("candidates cut by length", c.candidates_cut, c.candidates_cut ? "bad" : ""),
        statTile("candidates trimmed after a cut", c.candidates_trimmed),
        statTile("futures with a cut reply", c.futures_cut, c.futures_cut ? "bad" : ""),
        Object.keys(c.sampling_stopped || {}).length
          ? statTile("candidates settled early (adaptive)", c.sampling_stopped.settled || 0) : null),
      h("div", {class: "small"}, "ended: ", countsList(c.ended), " failure reasons: ",
        countsList(c.failure_reasons)),
      Object.keys(c.sampling_stopped || {}).length
        ? h("div", {class: "small"}, "adaptive sampling stopped: ", countsList(c.sampling_stopped)) : null,
      h("ul", {class: "inline-list small"}, sourceShares(c))),
    section("Multiturn-aware reward", h("div", {class: "chart-grid"},
      chartCard("MR", p.mr, (s) => histChart("MR of chosen vs rejected replies", s, color, "MR")),
      chartCard("MR gap", p.gap, (s) => histChart("MR gap: chosen − lowest rejected", s, color, "MR gap")),
      chartCard("MR by turn", p.mr_by_turn, (s) => lineChart("MR by turn", s, color, "assistant turn (0 = first)", "MR")),
      chartCard("Metrics by turn", p.metrics_by_turn,
        (s) => lineChart("Chosen replies: metric means by turn", s, metricColor, "assistant turn (0 = first)", "mean")))),
    new Browser(run).element(),
  ];
}

/* --- headline ---------------------------------------------------------------------------- */

/* One sentence per compared system: its difference in the headline figure and whether the 95%
 * interval excludes 0. */
function verdict(d, digits) {
  const kind = d.within_noise ? "noise" : d.mean > 0 ? "higher" : "lower";
  const words = d.within_noise ? "within noise (the interval contains 0)"
    : `${kind} than ${d.b} (the interval excludes 0)`;
  return h("li", {class: "headline-difference", "data-system": d.a},
    `${d.a}: ${d.mean >= 0 ? "+" : ""}${fmt(d.mean, digits)} `,
    h("span", {class: "ci"}, `[${fmt(d.low, digits)}, ${fmt(d.high, digits)}]`),
    " ", h("span", {class: `headline-verdict ${kind}`}, words));
}

/* The page opens on the result: per task metric, every system's task success with its 95%
 * interval, and the paired differences against the first system. */
function headlineView(headline) {
  const element = document.getElementById("headline");
  if (!headline) return;
  const systems = [...new Set(headline.charts.flatMap((c) => c.bars.map((b) => b.name)))];
  const color = colorFor(systems);
  element.replaceChildren();
  append(element, [h("h2", null, "Headline result"),
    h("p", {class: "note small"}, `From ${headline.run}: means with 95% bootstrap intervals; `,
      "differences are paired (same tasks and seeds)."),
    headline.charts.map((c) => h("div", {class: "headline-group"},
      h("div", {class: "headline-charts"},
        h("figure", {class: "card chart-card"}, barChart(`${c.group} (%) per system`, c.bars, color)),
        c.differences.length ? h("figure", {class: "card chart-card"},
          differenceChart(`${c.group}: difference vs ${c.base} (points)`, c.differences, color,
            FIGURE_DIGITS.score)) : null),
      h("ul", {class: "small"}, c.differences.map((d) => verdict(d, FIGURE_DIGITS.score)))))]);
  element.hidden = false;
}

/* --- page -------------------------------------------------------------------------------- */

/* How model-written code ran (from the run's manifest), shown above everything when it ran at
 * a weak isolation level that the config opted into. */
function sandboxNote(sandbox) {
  if (!sandbox) return null;
  if (!sandbox.weak_isolation) return h("p", {class: "note small"}, `code sandbox: ${sandbox.level}`);
  return h("p", {class: "note bad sandbox-weak"},
    `Model-written code ran with WEAK isolation (${sandbox.level}, sandbox.allow_weak_isolation: true): `,
    sandbox.weaknesses.join("; "));
}

function main() {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  document.title = data.title;
  document.getElementById("title").textContent = data.title;
  document.getElementById("subtitle").textContent =
    `${data.runs.length} run${data.runs.length === 1 ? "" : "s"} · created ${data.created} · collabrl ${data.version}`;
  headlineView(data.headline);
  const container = document.getElementById("runs");
  const tabs = document.getElementById("tabs");
  const views = data.runs.map(() => null);
  const show = (i) => {
    if (!views[i]) {
      const run = data.runs[i];
      views[i] = h("div", {class: "run", "data-kind": run.kind}, h("p", {class: "run-path"}, run.path),
        sandboxNote(run.sandbox), run.kind === "eval" ? evalView(run) : generateView(run));
      container.append(views[i]);
    }
    views.forEach((v, k) => { if (v) v.hidden = k !== i; });
    tabs.querySelectorAll("button").forEach((b, k) => b.classList.toggle("active", k === i));
  };
  tabs.replaceChildren(...data.runs.map((run, i) => h("button", {class: "tab", onclick: () => show(i)},
    badge(run.kind === "eval" ? "eval" : "data engine", run.kind), ` ${run.name}`)));
  container.replaceChildren();
  if (data.runs.length) show(0);
  window.__reportReady = true;
}

main();
