// What both boards (cls_board.js, seg_board.js) do alike in the browser; hitl/ui/board.py puts
// this before each. Escaping, the note line, the images kept ready (leased by the server's
// `take`), a restart that drops them (another strategy, a new session), and the tick that
// follows the class list, the task lock and resets. `S` is the board's state; `h` its hooks:
// prefix, tab (its gr.Tab id), depth, take, release, sync (server calls), prepare(item), show(item),
// showNothing(text, state), keep(item) (the item on screen survives a restart),
// classesChanged(). With nothing to show (all labeled, all reserved by others) the tick asks
// again, so new images, undone labels and freed reservations reach an idle page by themselves.
const hitlEsc = (t) => String(t == null ? "" : t).replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

function hitlNote(prefix) {
  // the board's note line: one message, red when it is a warning
  return (text, warn) => {
    const el = element.querySelector(`#${prefix}-note`);
    el.textContent = text || "";
    el.classList.toggle("hb-warn", !!warn);
    el.classList.remove("hb-done");
  };
}

function hitlFeed(S, h) {
  const $ = (sel) => element.querySelector(sel);

  async function refill(again) {
    if (S.stopped || S.message || !S.classes) return;
    if (S.fetching) { if (again) S.refetch = true; return; }
    const want = h.depth - S.queue.length;
    if (want <= 0 && !S.waiting) return;
    S.fetching = true;
    const generation = S.generation;
    let got = 0;
    try {
      const held = [S.shown, ...S.queue].filter(Boolean).map((i) => i.image_id);
      const r = await h.take({ strategy: $(".hb-strategy").value,
                               class_name: $(".hb-class").value || null,
                               n: Math.max(want, 1), exclude: held.concat([...S.sending]) });
      if (generation !== S.generation) return;  // restarted meanwhile: not ours
      if (!r || !r.ok) { if (S.waiting) h.showNothing((r && r.error) || "No answer.", "error"); return; }
      for (const item of r.items) {
        const ready = await h.prepare(item);
        if (generation !== S.generation) return;
        S.queue.push(ready);
      }
      got = r.items.length;
      if (S.waiting) {
        if (S.queue.length) h.show(S.queue.shift());
        else { S.waiting = false; h.showNothing(r.note || "No images left to label.", r.state); }
      }
    } catch (err) {
      if (S.waiting) h.showNothing("Could not fetch the next image: " + err, "error");
    } finally {
      // also after a failed or dropped fetch: a restart asked meanwhile must not be lost
      S.fetching = false;
      if (S.refetch) { S.refetch = false; refill(); }
      else if (got && S.queue.length < h.depth) refill();
    }
  }

  function restart() {
    // strategy or class changed, or a new session: drop what is held and fetch again
    S.generation += 1;
    const held = S.queue.map((i) => i.image_id);
    S.queue = [];
    if (S.keys) S.keys = [];  // keys waiting were meant for the images just dropped
    if (held.length) h.release({ ids: held });
    S.waiting = true;
    if (S.shown && h.keep(S.shown)) S.queue.push(S.shown);
    if (S.queue.length) h.show(S.queue.shift()); else h.showNothing();
    refill(true);
  }

  async function sync() {
    if (S.stopped) return;
    if (!element.isConnected) { S.stopped = true; return; }
    let r;
    try {
      const held = [S.shown, ...S.queue].filter(Boolean).map((i) => i.image_id);
      r = await h.sync({ held });
    } catch (err) { return; }
    if (!r) return;
    const wasLocked = !!S.message;
    S.message = r.message || "";
    const lock = $(`#${h.prefix}-lock`);
    lock.textContent = S.message; lock.hidden = !S.message;
    $(".hb-body").hidden = !!S.message;
    // a board for the task the session is not doing: its tab (button or menu item) goes
    for (const tab of document.querySelectorAll(`[data-tab-id="${h.tab}"]`)) {
      tab.style.display = S.message ? "none" : "";
    }
    const newSession = S.epoch !== null && r.epoch !== S.epoch;
    S.epoch = r.epoch;
    if (r.rev !== S.rev) { S.rev = r.rev; S.classes = r.classes; h.classesChanged(); }
    if (r.progress) renderProgress(r.progress, r.user);
    if (S.message) { if (S.keys) S.keys = []; return; }
    if (newSession) { S.shown = null; S.queue = []; restart(); return; }
    if (wasLocked || (!S.shown && !S.queue.length && !S.fetching && !S.waiting)) {
      S.waiting = true; refill();
    }
  }

  function renderProgress(p, user) {
    // labeled / total, the caller's work today, and who is signed in
    const named = user && !/^(browser-|local$)/.test(user);
    const html =
      `<progress max="${p.total}" value="${p.labeled}"></progress>` +
      `<span><b>${p.labeled} / ${p.total}</b> labeled · ${p.left} left · ` +
      `${p.mine_today} yours today</span>` +
      (named ? `<span class="hb-user">Signed in as <b>${hitlEsc(user)}</b> · ` +
               `<a href="logout">Log out</a></span>` : "");
    if (html !== S.progressHtml) $(`#${h.prefix}-progress`).innerHTML = S.progressHtml = html;
  }

  function giveBack() {
    // the page closes or goes to the back-forward cache: its reserved images go back now
    const ids = [S.shown, ...S.queue].filter(Boolean).map((i) => i.image_id);
    if (!ids.length || !navigator.sendBeacon) return;
    navigator.sendBeacon(h.leaveUrl, new Blob([JSON.stringify({ ids })], { type: "text/plain" }));
  }
  window.addEventListener("pagehide", giveBack);

  function start(paused) {
    // the first tick, then one every 2 s (a test may pause them)
    sync().then(() => { if (!S.message) { S.waiting = true; refill(); } });
    const timer = setInterval(() => {
      if (S.stopped) clearInterval(timer);
      else if (!paused()) sync();
    }, 2000);
  }

  return { refill, restart, sync, start };
}
