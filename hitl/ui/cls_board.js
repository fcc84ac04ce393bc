// The Classification board (gr.HTML js_on_load: `element` and `server` are given).
// The browser holds the image on screen and the next few (leased, chosen by the strategy), so
// a key shows the next image at once; the label goes to the server in the background with
// the image id, the class name on the button and the class-list revision the buttons were
// drawn from. A refused or failed send puts that image back on screen with the reason.
(() => {
  const DEPTH = 3;          // images kept ready in the browser
  const $ = (sel) => element.querySelector(sel);
  const S = {
    rev: null, epoch: null, generation: 0, classes: [], message: "",
    shown: null,            // the item on screen ({image_id, src, ...}); painted once drawn
    waiting: false,         // a label moved on and the next image is still on its way
    queue: [], keys: [], sending: new Set(), fetching: false, chain: Promise.resolve(),
    token: 0, stopped: false,
  };
  const log = window.__hitlLog = window.__hitlLog || { displayed: [], sent: [] };

  const esc = hitlEsc, note = hitlNote("cls");  // hitl/ui/board_feed.js
  const EMPTY = { done: "All labeled ✓", reserved: "Reserved by other labelers", held: "Saving…" };

  function renderButtons() {
    const box = $("#cls-buttons");
    const item = S.shown;
    const pred = item && item.label == null ? item.prediction : null;
    box.innerHTML = S.classes.map((c, i) => {
      const key = i < 10 ? `${(i + 1) % 10}: ` : "";
      let text = key + c.name, cls = "hb-btn";
      if (item && item.label === c.name) { text = "✓ " + text; cls += " hb-primary"; }
      else if (pred && pred.label === c.name) {
        text += ` · ${Math.round(pred.probability * 100)}%`; cls += " hb-primary";
      }
      return `<button id="cls-btn-${i}" class="${cls}" data-slot="${i}" data-rev="${S.rev}"
        style="border-left:6px solid ${esc(c.colour)}">${esc(text)}</button>`;
    }).join("");
    const select = $(".hb-class"), keep = select.value;
    select.innerHTML = `<option value=""></option>` + S.classes.map(
      (c) => `<option${c.name === keep ? " selected" : ""}>${esc(c.name)}</option>`).join("");
    if (S.rev !== null && !S.classes.length) note("Add classes in the Classes tab to start labeling.");
  }

  function renderTitle(item, text) {
    const title = $("#cls-title");
    if (!item) { title.textContent = text || "No image"; return; }
    const extra = (item.split === "val" ? " · validation" : "") + (item.skipped ? " · skipped" : "");
    title.innerHTML = `Image ${item.image_id} · <code>${esc(item.filename)}</code>${extra}`;
  }

  function itemNote(item, extra) {
    const lines = [item.note, item.problem, extra];
    if (item.prediction && item.label == null) {
      const p = item.prediction;
      lines.push(`Model v${p.model_version} predicts ${p.label} (${Math.round(p.probability * 100)}%).`);
    }
    return lines.filter(Boolean).join(" · ");
  }

  function decoded(item) {
    // an <img> for the item, decoding off the main thread as soon as the item arrives
    if (!item.img) {
      item.img = new Image();
      item.img.src = item.src || "";
      item.ready = item.src && item.img.decode ? item.img.decode().catch(() => {}) : Promise.resolve();
    }
    return item.img;
  }

  // Put an item on screen; keys wait until its pixels are drawn (never applied unseen).
  function show(item, extra, warn) {
    S.shown = item; S.waiting = false;
    item.painted = false;
    const token = ++S.token;
    renderTitle(item); renderButtons();
    note(itemNote(item, extra), warn);
    // the element decoded while the image waited in the queue takes the old one's place
    const img = decoded(item), old = $("#cls-image");
    if (old !== img) { img.id = "cls-image"; img.alt = ""; old.replaceWith(img); }
    img.style.visibility = item.src ? "visible" : "hidden";
    const drawn = item.ready || Promise.resolve();
    drawn.then(() => requestAnimationFrame(() => requestAnimationFrame(() => {
      if (token !== S.token) return;
      item.painted = true;
      S.seen = true;
      log.displayed.push({ image_id: item.image_id, at: performance.now(),
                           classes: S.classes.map((c) => c.name), rev: S.rev });
      drain();
    })));
  }

  function showNothing(text, state) {
    S.shown = null; S.token++;
    renderTitle(null, text ? EMPTY[state] || "No image" : "Loading…");
    $("#cls-image").style.visibility = "hidden";
    renderButtons();
    if (text) note(text);
    $("#cls-note").classList.toggle("hb-done", state === "done");
  }

  // ---- keys and clicks --------------------------------------------------------------------
  function act(action) {
    if (S.message || !S.seen) return false;  // before any image was drawn a key does nothing
    if (S.shown && S.shown.painted && !S.keys.length) { apply(action); return true; }
    if (S.waiting || (S.shown && !S.shown.painted)) { S.keys.push(action); return true; }
    return false;  // nothing on screen and nothing coming: a key does nothing
  }

  function drain() {
    if (S.keys.length && S.shown && S.shown.painted) apply(S.keys.shift());
  }

  function apply(action) {
    const item = S.shown;
    let name = null;
    if (action.op === "label") {
      const c = S.classes[action.slot];
      if (!c) { S.keys = []; note(`There is no class ${action.slot + 1}.`, true); return; }
      name = c.name;
    }
    const payload = { op: action.op, image_id: item.image_id, class_name: name, rev: S.rev };
    log.sent.push({ ...payload, at: performance.now() });
    S.sending.add(item.image_id);  // before advance: the refill must not fetch it again
    advance();
    send(payload, item);
  }

  function advance() {
    const next = S.queue.shift();
    if (next) show(next); else { S.waiting = true; showNothing(); }
    refill();
  }

  function send(payload, item) {
    S.sending.add(item.image_id);
    S.chain = S.chain.then(() => server.cls_act(payload)).then((r) => {
      S.sending.delete(item.image_id);
      if (!r || !r.ok) rollback(item, (r && r.error) || "no answer from the server");
    }, (err) => {
      S.sending.delete(item.image_id);
      rollback(item, "could not reach the server (" + err + ")");
    });
  }

  function rollback(item, error) {
    S.keys = [];  // they were meant for the images after this one
    if (S.shown) S.queue.unshift(S.shown);
    item.label = null;
    show(item, "⚠️ Not saved: " + error, true);
    sync();
  }

  async function undo() {
    S.keys = [];
    await S.chain;
    const r = await server.cls_undo({});
    if (!r || !r.ok) { note((r && r.error) || "Undo failed.", true); return; }
    if (S.shown && S.shown.image_id !== r.item.image_id) S.queue.unshift(S.shown);
    show(r.item, `Undone: image ${r.item.image_id} is back as it was.`);
  }

  async function open(request) {
    S.keys = [];
    const r = await server.cls_open({ ...request, from: S.shown ? S.shown.image_id : null });
    if (!r || !r.ok) { note((r && r.error) || "Could not open it.", true); return; }
    if (S.shown && S.shown.image_id !== r.item.image_id && S.shown.label == null
        && !S.shown.skipped) S.queue.unshift(S.shown);
    S.queue = S.queue.filter((i) => i.image_id !== r.item.image_id);
    show(r.item);
  }

  // ---- the images kept ready, and the tick (hitl/ui/board_feed.js) ------------------------
  const { refill, restart, sync, start } = hitlFeed(S, {
    prefix: "cls", tab: "classification", depth: DEPTH, take: (a) => server.cls_take(a),
    release: (a) => server.cls_release(a), sync: (a) => server.cls_sync(a),
    prepare: (item) => { decoded(item); return item; }, show, showNothing,
    keep: (item) => item.label == null && !item.skipped, classesChanged: renderButtons,
  });

  // ---- wiring --------------------------------------------------------------------------------
  element.addEventListener("click", (ev) => {
    const btn = ev.target.closest("button");
    if (!btn) return;
    if (btn.dataset.slot !== undefined) act({ op: "label", slot: parseInt(btn.dataset.slot, 10) });
    else if (btn.id === "cls-skip") act({ op: "skip" });
    else if (btn.id === "cls-undo") undo();
    else if (btn.id === "cls-prev") open({ step: -1 });
    else if (btn.id === "cls-next") open({ step: 1 });
    else if (btn.id === "cls-fetch") restart();
    else if (btn.id === "cls-go") goto();
  });
  const gotoBox = $("#cls-goto input");
  function goto() {
    const text = gotoBox.value.trim();
    gotoBox.blur();  // keys label again after Enter
    open({ image_id: text });
  }
  gotoBox.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); goto(); }
    if (ev.key === "Escape") gotoBox.blur();
  });
  // a chosen option gives the keys back to the board (a focused <select> keeps them otherwise)
  $(".hb-strategy").addEventListener("change", (ev) => { ev.target.blur(); restart(); });
  $(".hb-class").addEventListener("change", (ev) => {
    ev.target.blur();
    if ($(".hb-strategy").value === "class") restart();
  });

  window.hitlBoard = {
    element,
    key(key) {  // from keys.js; true when the key was ours
      if (/^[0-9]$/.test(key)) return act({ op: "label", slot: key === "0" ? 9 : parseInt(key, 10) - 1 });
      if (key === "s" || key === "S") return act({ op: "skip" });
      if (["u", "U", "Backspace", "Undo"].includes(key)) { undo(); return true; }
      if (key === "ArrowLeft") { open({ step: -1 }); return true; }
      if (key === "ArrowRight") { open({ step: 1 }); return true; }
      if (key === "g" || key === "G") { gotoBox.focus(); gotoBox.select(); return true; }
      return false;
    },
    state: S,
  };
  showNothing();
  start(() => window.hitlBoard.pause);  // paused only by tests
})();
