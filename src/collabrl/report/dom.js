"use strict";
/* DOM helpers and number formats shared by the report's scripts.
 * Safety rule of the whole report: text from the data (replies, user messages, judge output,
 * names) only ever becomes a text node or an attribute value; nothing is parsed as markup, so a
 * "<script>" inside a reply is shown, not run. h() and svg() are the only element builders. */

const SVG_NS = "http://www.w3.org/2000/svg";

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/* h("div", {class: "x"}, "text", child, [more]) */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  return append(el, children);
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  return append(el, children);
}

function fmt(value, digits = 2) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function fmtInterval(est, digits) {
  return est ? `[${fmt(est.low, digits)}, ${fmt(est.high, digits)}]` : "";
}

function badge(text, kind) {
  return h("span", {class: `badge ${kind || ""}`}, text);
}

/* A <details> whose body is built on first open: thousands of candidates and futures cost
 * nothing until someone looks at them. The body is built by the summary's click (mouse,
 * keyboard or script), which runs before the browser opens the details, so an open details is
 * never empty. The "toggle" event alone is too late: it comes as a task of its own after the
 * details opened, and in between the page (and a test reading it) saw an open, empty section.
 * It stays for opens without a click (setting ``open`` from a script). */
function lazyDetails(summary, build, attrs) {
  const body = h("div", {class: "details-body"});
  const fill = () => {
    if (!body.hasChildNodes()) append(body, [build()]);
  };
  const el = h("details", attrs, h("summary", {onclick: fill}, summary), body);
  el.addEventListener("toggle", () => {
    if (el.open) fill();
  });
  return el;
}

function countsList(counts) {
  const entries = Object.entries(counts || {}).sort((a, b) => b[1] - a[1]);
  if (!entries.length) return h("span", {class: "muted"}, "none");
  return h("ul", {class: "inline-list"}, entries.map(([k, v]) => h("li", null, `${k}: ${v}`)));
}
