// The study's chat page: sends messages, shows replies as they stream in, asks for ratings and
// autosaves the draft. Texts from the participant or the model reach the page only through
// textContent, never as HTML; the server escapes what it renders, and its Content-Security-Policy
// allows no inline script.
"use strict";

(function () {
  const root = document.getElementById("study");
  if (!root) return;
  const base = root.dataset.base;
  const label = root.dataset.label;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const messages = $("messages"), input = $("input"), send = $("send"), notice = $("notice");
  const noticeText = $("notice-text"), retryButton = $("retry"), rating = $("rating");
  const draft = $("document"), draftStatus = $("draft-status");
  const state = { busy: false, ratingTurn: null, atMax: false };
  const INTERRUPTED = "The reply was interrupted. Your message is saved; press Retry.";

  function refresh() {
    const blocked = state.busy || state.ratingTurn !== null || state.atMax;
    send.disabled = blocked;
    input.disabled = state.ratingTurn !== null || state.atMax;
    rating.hidden = state.ratingTurn === null;
  }

  function post(path, body) {
    return fetch(base + path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {}),
    });
  }

  async function errorText(response) {
    try {
      const data = await response.json();
      return data.error || response.statusText;
    } catch (e) {
      return "The server answered " + response.status + ".";
    }
  }

  function addMessage(role, text) {
    const box = document.createElement("div");
    box.className = "message " + role;
    const who = document.createElement("div");
    who.className = "who";
    who.textContent = role === "user" ? "You" : label;
    const body = document.createElement("div");
    body.className = "text";
    body.textContent = text;
    box.append(who, body);
    messages.append(box);
    box.scrollIntoView({ block: "end" });
    return body;
  }

  function showNotice(text, canRetry) {
    noticeText.textContent = text;
    retryButton.hidden = !canRetry;
    notice.hidden = false;
  }

  function clearNotice() {
    notice.hidden = true;
    retryButton.hidden = true;
  }

  function applyStatus(status) {
    state.ratingTurn = status.rating_due || null;
    state.atMax = Boolean(status.at_max);
    if (state.atMax) showNotice("This conversation reached its last turn: please finish your document.", false);
    refresh();
  }

  // The reply arrives as JSON lines: {"type": "chunk"} ..., then one "done" or "error".
  async function readReply(response) {
    const body = addMessage("assistant", "");
    const box = body.parentElement;
    box.classList.add("streaming");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", outcome = null;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, end);
          buffer = buffer.slice(end + 1);
          if (!line.trim()) continue;
          const event = JSON.parse(line);
          if (event.type === "chunk") body.textContent += event.text;
          else outcome = event;
        }
      }
    } catch (e) {
      outcome = null;
    }
    box.classList.remove("streaming");
    if (outcome && outcome.type === "done") {
      applyStatus(outcome);
      return;
    }
    box.remove();
    showNotice(outcome ? outcome.message : INTERRUPTED, true);
  }

  async function sendMessage(event) {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || state.busy) return;
    state.busy = true;
    refresh();
    clearNotice();
    try {
      const response = await post("/message", { text: text });
      if (!response.ok) {
        showNotice(await errorText(response), false);
        return;
      }
      input.value = "";  // stored on the server: only now is it safe to clear the box
      addMessage("user", text);
      await readReply(response);
    } catch (e) {
      showNotice("Could not reach the server. Your text is still in the box; please send it again.", false);
    } finally {
      state.busy = false;
      refresh();
    }
  }

  async function retry() {
    clearNotice();
    state.busy = true;
    refresh();
    try {
      const response = await post("/retry");
      if (response.status === 409) {
        location.reload();  // the reply arrived meanwhile: show the stored conversation
        return;
      }
      if (!response.ok) {
        showNotice(await errorText(response), true);
        return;
      }
      await readReply(response);
    } catch (e) {
      showNotice("Could not reach the server. Please press Retry again in a moment.", true);
    } finally {
      state.busy = false;
      refresh();
    }
  }

  async function rate(event) {
    const value = Number(event.currentTarget.dataset.value);
    const response = await post("/rating", { turn: state.ratingTurn, value: value });
    if (!response.ok && response.status !== 409) {
      showNotice(await errorText(response), false);
      return;
    }
    state.ratingTurn = null;
    refresh();
  }

  let draftTimer = null;
  function scheduleDraft() {
    clearTimeout(draftTimer);
    draftStatus.textContent = "Saving your draft...";
    draftTimer = setTimeout(async () => {
      try {
        const response = await post("/draft", { text: draft.value });
        draftStatus.textContent = response.ok ? "Draft saved." : "Draft not saved: " + (await errorText(response));
      } catch (e) {
        draftStatus.textContent = "Draft not saved: the server cannot be reached.";
      }
    }, 700);
  }

  $("composer").addEventListener("submit", sendMessage);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) sendMessage(event);
  });
  retryButton.addEventListener("click", retry);
  document.querySelectorAll("#rating .rate").forEach((b) => b.addEventListener("click", rate));
  draft.addEventListener("input", scheduleDraft);

  applyStatus({ rating_due: Number(root.dataset.ratingDue) || null, at_max: root.dataset.atMax === "yes" });
  if (root.dataset.awaiting === "yes") {
    if (root.dataset.inFlight === "yes") retry();  // follow the reply still being written
    else showNotice(INTERRUPTED, true);
  }
  root.dataset.ready = "yes";
})();
