// The Segmentation painter (gr.HTML js_on_load: `element` and `server` are given).
// Brush class, size, eraser, opacity and the prediction overlay live here, with no server
// event; each stroke keeps the class it started with. Masks are class positions painted
// pixel by pixel (no antialiasing), shown as a semi-transparent layer over the image.
// The next images are prefetched (leased); save sends the edit in the background and shows
// the next image at once; a refused or failed save brings that image and its paint back.
(() => {
  const DEPTH = 2;
  const KEEP = 255;  // an edit pixel the labeler did not touch
  const $ = (sel) => element.querySelector(sel);
  const S = {
    rev: null, epoch: null, generation: 0, classes: [], message: "", brush: 0, eraser: false,
    size: null, opacity: 0.5, overlay: false,
    shown: null, waiting: false, queue: [], sending: new Set(), fetching: false,
    chain: Promise.resolve(), token: 0, stopped: false, stroke: null,
  };
  const log = window.__hitlSegLog = window.__hitlSegLog || { displayed: [], saved: [] };
  const layer = $("#seg-canvas"), over = $("#seg-pred");
  const lctx = layer.getContext("2d"), octx = over.getContext("2d");

  const esc = hitlEsc, note = hitlNote("seg");  // hitl/ui/board_feed.js
  const rgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));

  // ---- class positions <-> pixels ------------------------------------------------------
  function decodePositions(url, w, h) {
    // a grey PNG whose value is the class position -> Uint8Array(w*h)
    return new Promise((resolve) => {
      if (!url) { resolve(null); return; }
      const im = new Image();
      im.onload = () => {
        const c = document.createElement("canvas");
        c.width = w; c.height = h;
        const x = c.getContext("2d");
        x.drawImage(im, 0, 0, w, h);
        const d = x.getImageData(0, 0, w, h).data, out = new Uint8Array(w * h);
        for (let i = 0; i < out.length; i++) out[i] = d[i * 4];
        resolve(out);
      };
      im.onerror = () => resolve(null);
      im.src = url;
    });
  }

  function encodeEdit(item) {
    // positions where touched, KEEP elsewhere, as a grey PNG data URL
    const { w, h } = item, c = document.createElement("canvas");
    c.width = w; c.height = h;
    const x = c.getContext("2d"), data = x.createImageData(w, h), d = data.data;
    for (let i = 0; i < w * h; i++) {
      const v = item.touched[i] ? item.pos[i] : KEEP;
      d[i * 4] = d[i * 4 + 1] = d[i * 4 + 2] = v; d[i * 4 + 3] = 255;
    }
    x.putImageData(data, 0, 0);
    return c.toDataURL("image/png");
  }

  function lut() {
    return S.classes.map((c) => rgb(c.colour));
  }

  function paintRect(item, x0, y0, x1, y1, ctx, pos) {
    // redraw one rectangle of a layer from positions
    x0 = Math.max(0, x0); y0 = Math.max(0, y0);
    x1 = Math.min(item.w, x1); y1 = Math.min(item.h, y1);
    if (x1 <= x0 || y1 <= y0) return;
    const colours = lut(), part = ctx.createImageData(x1 - x0, y1 - y0), d = part.data;
    let k = 0;
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++, k += 4) {
        const p = pos[y * item.w + x];
        const c = p > 0 && p <= colours.length ? colours[p - 1] : null;
        if (c) { d[k] = c[0]; d[k + 1] = c[1]; d[k + 2] = c[2]; d[k + 3] = 255; }
      }
    }
    ctx.putImageData(part, x0, y0);
  }

  function remap(item) {
    // positions follow the class names they were painted with when the class list changes
    const names = S.classes.map((c) => c.name);
    if (!item.pos || !item.names || item.names.join("\n") === names.join("\n")) return;
    const table = new Uint8Array(256);
    item.names.forEach((name, i) => { table[i + 1] = names.indexOf(name) + 1; });
    for (let i = 0; i < item.pos.length; i++) item.pos[i] = table[item.pos[i]];
    // untouched pixels are sent as KEEP: the server keeps them by class, in any order
    item.names = names; item.pred = null;
  }

  function redraw() {
    const item = S.shown;
    if (!item) return;
    paintRect(item, 0, 0, item.w, item.h, lctx, item.pos);
    if (item.pred) paintRect(item, 0, 0, item.w, item.h, octx, item.pred);
  }

  function setOpacity() {
    layer.style.opacity = S.opacity;
    over.style.opacity = S.opacity;
    over.style.display = S.overlay ? "block" : "none";
    $("#seg-overlay-toggle").checked = S.overlay;
  }

  // ---- the stroke ------------------------------------------------------------------------
  function toPixel(ev) {
    const r = layer.getBoundingClientRect(), item = S.shown;
    return [(ev.clientX - r.left) * item.w / r.width, (ev.clientY - r.top) * item.h / r.height];
  }

  function disc(item, cx, cy, radius, value, box) {
    const r2 = radius * radius;
    const x0 = Math.floor(cx - radius), x1 = Math.ceil(cx + radius);
    const y0 = Math.floor(cy - radius), y1 = Math.ceil(cy + radius);
    for (let y = Math.max(0, y0); y <= Math.min(item.h - 1, y1); y++) {
      for (let x = Math.max(0, x0); x <= Math.min(item.w - 1, x1); x++) {
        const dx = x + 0.5 - cx, dy = y + 0.5 - cy;
        if (dx * dx + dy * dy <= r2) {
          item.pos[y * item.w + x] = value;
          item.touched[y * item.w + x] = 1;
        }
      }
    }
    box[0] = Math.min(box[0], x0); box[1] = Math.min(box[1], y0);
    box[2] = Math.max(box[2], x1 + 1); box[3] = Math.max(box[3], y1 + 1);
  }

  function strokeTo(pt) {
    const s = S.stroke, item = S.shown;
    const [x, y] = pt, [px, py] = s.last;
    const steps = Math.max(1, Math.ceil(Math.hypot(x - px, y - py) / Math.max(1, s.radius / 2)));
    const box = [Infinity, Infinity, -Infinity, -Infinity];
    for (let i = 1; i <= steps; i++) {
      disc(item, px + (x - px) * i / steps, py + (y - py) * i / steps, s.radius, s.value, box);
    }
    s.last = pt;
    paintRect(item, box[0], box[1], box[2], box[3], lctx, item.pos);
  }

  layer.addEventListener("pointerdown", (ev) => {
    if (!S.shown || !S.shown.painted || ev.button !== 0) return;
    ev.preventDefault();
    try { layer.setPointerCapture(ev.pointerId); } catch (err) { /* a synthetic pointer */ }
    // the class (or eraser) and size are fixed when the stroke starts
    S.stroke = { value: S.eraser ? 0 : S.brush + 1, radius: S.size / 2, last: toPixel(ev),
                 id: ev.pointerId };
    strokeTo(S.stroke.last);
    S.shown.edited = true;
  });
  layer.addEventListener("pointermove", (ev) => {
    if (!S.stroke || ev.pointerId !== S.stroke.id) return;
    ev.preventDefault();
    const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [ev];
    for (const e of (events.length ? events : [ev])) strokeTo(toPixel(e));
  });
  const endStroke = (ev) => { if (S.stroke && ev.pointerId === S.stroke.id) S.stroke = null; };
  layer.addEventListener("pointerup", endStroke);
  layer.addEventListener("pointercancel", endStroke);
  layer.addEventListener("dragstart", (ev) => ev.preventDefault());

  // ---- tools ------------------------------------------------------------------------------
  function renderTools() {
    const box = $("#seg-classes");
    box.innerHTML = S.classes.map((c, i) => {
      const key = i < 10 ? `${(i + 1) % 10} ` : "";
      const on = !S.eraser && i === S.brush ? " hb-primary" : "";
      return `<button id="seg-brush-${i}" class="hb-btn${on}" data-slot="${i}"
        style="border-left:10px solid ${esc(c.colour)}">${esc(key + c.name)}</button>`;
    }).join("") + `<button id="seg-eraser" class="hb-btn${S.eraser ? " hb-primary" : ""}">Eraser (E)</button>`;
    const select = $(".hb-class"), keep = select.value;
    select.innerHTML = `<option value=""></option>` + S.classes.map(
      (c) => `<option${c.name === keep ? " selected" : ""}>${esc(c.name)}</option>`).join("");
    $("#seg-size").value = S.size || 12;
    $("#seg-size-value").textContent = S.size || 12;
    if (S.rev !== null && !S.classes.length) note("Add classes in the Classes tab to start painting.");
  }

  function choose(slot) {
    if (slot >= S.classes.length) { note(`There is no class ${slot + 1}.`, true); return; }
    S.brush = slot; S.eraser = false; renderTools();
  }

  // ---- showing an image ---------------------------------------------------------------------
  function renderTitle(item, text) {
    const title = $("#seg-title");
    if (!item) { title.textContent = text || "No image"; return; }
    const extra = (item.split === "val" ? " · validation" : "") + (item.skipped ? " · skipped" : "");
    title.innerHTML = `Image ${item.image_id} · <code>${esc(item.filename)}</code>${extra}`;
  }

  async function prepare(item) {
    // pixels of the stored mask, once, before the item is shown
    if (item.pos) return item;
    const stored = await decodePositions(item.mask, item.w, item.h);
    item.pos = stored || new Uint8Array(item.w * item.h);
    item.touched = new Uint8Array(item.w * item.h);
    item.image = new Image();
    item.image.draggable = false;
    item.image.src = item.src || "";
    item.decoded = item.src && item.image.decode ? item.image.decode().catch(() => {}) : null;
    return item;
  }

  function show(item, extra, warn) {
    S.shown = item; S.waiting = false; item.painted = false;
    const token = ++S.token;
    renderTitle(item);
    note([item.note, item.problem, extra].filter(Boolean).join(" · "), warn);
    if (!S.size) S.size = Math.max(4, Math.round(Math.max(item.w, item.h) / 40));
    renderTools();
    const ready = prepare(item).then(() => remap(item));
    if (S.overlay && !item.pred) loadPrediction(item, false);
    setOpacity();
    ready.then(() => item.decoded).then(() => requestAnimationFrame(() => {
      if (token !== S.token) return;
      // the element decoded while the image waited in the queue takes the old one's place
      const old = $("#seg-image");
      if (old !== item.image) { item.image.id = "seg-image"; item.image.alt = ""; old.replaceWith(item.image); }
      item.image.style.visibility = item.src ? "visible" : "hidden";
      $(".hb-stage").style.aspectRatio = `${item.w} / ${item.h}`;
      for (const c of [layer, over]) { c.width = item.w; c.height = item.h; }
      redraw();
      requestAnimationFrame(() => {
        if (token !== S.token) return;
        item.painted = true;
        log.displayed.push({ image_id: item.image_id, at: performance.now() });
      });
    }));
  }

  function showNothing(text) {
    S.shown = null; S.token++;
    renderTitle(null, text ? "No image" : "Loading…");
    $("#seg-image").style.visibility = "hidden";
    lctx.clearRect(0, 0, layer.width, layer.height);
    octx.clearRect(0, 0, over.width, over.height);
    if (text) note(text);
  }

  async function loadPrediction(item, accept) {
    const r = await server.seg_prediction({ image_id: item.image_id, rev: S.rev });
    if (!r || !r.ok || !r.mask) {
      if (item === S.shown) note((r && r.error) || "No prediction for this image yet.", accept);
      return false;
    }
    item.pred = await decodePositions(r.mask, item.w, item.h);
    if (item === S.shown && item.pred) paintRect(item, 0, 0, item.w, item.h, octx, item.pred);
    return !!item.pred;
  }

  async function accept() {
    const item = S.shown;
    if (!item || !item.painted) return;
    if (!item.pred && !(await loadPrediction(item, true))) return;
    if (item !== S.shown) return;
    item.pos = item.pred.slice();
    item.touched.fill(1);
    item.edited = true;
    paintRect(item, 0, 0, item.w, item.h, lctx, item.pos);
    note("Prediction loaded as the mask: correct it, then save (Enter).");
  }

  // ---- save, skip, undo, open ------------------------------------------------------------
  function save(op) {
    const item = S.shown;
    if (!item || !item.painted || S.message) return;
    if (op === "save" && !item.pos.some((v) => v > 0)) {
      note(`Nothing is painted on image ${item.image_id}: nothing saved (Skip passes it).`, true);
      return;
    }
    const payload = { op, image_id: item.image_id, rev: S.rev };
    if (op === "save") payload.edit = encodeEdit(item);
    log.saved.push({ image_id: item.image_id, at: performance.now(), op });
    S.sending.add(item.image_id);
    const next = S.queue.shift();
    if (next) show(next); else { S.waiting = true; showNothing(); }
    refill();
    S.chain = S.chain.then(() => server.seg_act(payload)).then((r) => {
      S.sending.delete(item.image_id);
      if (!r || !r.ok) rollback(item, (r && r.error) || "no answer from the server");
      else if (S.shown && op === "save") {
        const el = $("#seg-saved");
        el.textContent = `Saved image ${item.image_id} (${r.labeled_pixels} labeled pixels).`;
      }
    }, (err) => {
      S.sending.delete(item.image_id);
      rollback(item, "could not reach the server (" + err + ")");
    });
  }

  function rollback(item, error) {
    if (S.shown) S.queue.unshift(S.shown);
    show(item, "⚠️ Not saved: " + error, true);
    sync();
  }

  async function undo() {
    await S.chain;
    const r = await server.seg_undo({});
    if (!r || !r.ok) { note((r && r.error) || "Undo failed.", true); return; }
    if (S.shown && S.shown.image_id !== r.item.image_id && !S.shown.edited) S.queue.unshift(S.shown);
    show(await prepare(r.item), `Undone: image ${r.item.image_id} is back as it was.`);
  }

  async function open(request) {
    const r = await server.seg_open({ ...request, from: S.shown ? S.shown.image_id : null });
    if (!r || !r.ok) { note((r && r.error) || "Could not open it.", true); return; }
    if (S.shown && S.shown.image_id !== r.item.image_id && S.shown.label == null) S.queue.unshift(S.shown);
    S.queue = S.queue.filter((i) => i.image_id !== r.item.image_id);
    show(await prepare(r.item));
  }

  // ---- the images kept ready, and the tick (hitl/ui/board_feed.js) ------------------------
  const { refill, restart, sync, start } = hitlFeed(S, {
    prefix: "seg", depth: DEPTH, take: (a) => server.seg_take(a),
    release: (a) => server.seg_release(a), sync: (a) => server.seg_sync(a),
    prepare, show, showNothing, keep: (item) => !item.edited && item.label == null,
    classesChanged() {
      if (S.brush >= S.classes.length) S.brush = 0;
      for (const item of S.queue) remap(item);
      if (S.shown) remap(S.shown);
      renderTools(); redraw();
    },
  });

  // ---- wiring --------------------------------------------------------------------------------
  element.addEventListener("click", (ev) => {
    const btn = ev.target.closest("button");
    if (!btn) return;
    if (btn.dataset.slot !== undefined) choose(parseInt(btn.dataset.slot, 10));
    else if (btn.id === "seg-eraser") { S.eraser = !S.eraser; renderTools(); }
    else if (btn.id === "seg-save") save("save");
    else if (btn.id === "seg-skip") save("skip");
    else if (btn.id === "seg-undo") undo();
    else if (btn.id === "seg-prev") open({ step: -1 });
    else if (btn.id === "seg-next") open({ step: 1 });
    else if (btn.id === "seg-accept") accept();
    else if (btn.id === "seg-clear" && S.shown) {
      S.shown.pos.fill(0); S.shown.touched.fill(1); S.shown.edited = true; redraw();
    }
    else if (btn.id === "seg-go") goto();
  });
  const gotoBox = $("#seg-goto input");
  function goto() {
    const text = gotoBox.value.trim();
    gotoBox.blur();
    open({ image_id: text });
  }
  gotoBox.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); goto(); }
    if (ev.key === "Escape") gotoBox.blur();
  });
  $("#seg-size").addEventListener("input", (ev) => {
    S.size = parseInt(ev.target.value, 10); $("#seg-size-value").textContent = S.size;
  });
  $("#seg-opacity").addEventListener("input", (ev) => { S.opacity = parseFloat(ev.target.value); setOpacity(); });
  $("#seg-overlay-toggle").addEventListener("change", (ev) => toggleOverlay(ev.target.checked));
  $(".hb-strategy").addEventListener("change", () => restart());
  $(".hb-class").addEventListener("change", () => { if ($(".hb-strategy").value === "class") restart(); });

  function toggleOverlay(on) {
    S.overlay = on; setOpacity();
    if (on && S.shown && !S.shown.pred) loadPrediction(S.shown, false);
  }

  window.hitlSeg = {
    element,
    key(key) {
      if (/^[0-9]$/.test(key)) { choose(key === "0" ? 9 : parseInt(key, 10) - 1); return true; }
      if (key === "Enter") { save("save"); return true; }
      if (key === "s" || key === "S") { save("skip"); return true; }
      if (key === "e" || key === "E") { S.eraser = !S.eraser; renderTools(); return true; }
      if (key === "a" || key === "A") { accept(); return true; }
      if (key === "m" || key === "M") { toggleOverlay(!S.overlay); return true; }
      if (key === "n" || key === "N") { open({ step: 1 }); return true; }
      if (key === "b" || key === "B") { open({ step: -1 }); return true; }
      if (key === "u" || key === "U") { undo(); return true; }
      if (key === "[") { S.size = Math.max(1, S.size - 2); renderTools(); return true; }
      if (key === "]") { S.size = Math.min(200, S.size + 2); renderTools(); return true; }
      if (key === "g" || key === "G") { gotoBox.focus(); gotoBox.select(); return true; }
      return false;
    },
    state: S,
  };
  showNothing();
  start(() => window.hitlSeg.pause);  // paused only by tests
})();
