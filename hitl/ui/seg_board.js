// The Segmentation painter (gr.HTML js_on_load: `element` and `server` are given).
// Tools (brush, eraser, fill, polygon, wand), class, size, opacity, zoom and the prediction
// overlay live here, with no server event; each stroke keeps the class it started with and
// undoes as one step. Masks are class positions painted pixel by pixel (no antialiasing) at
// the image's own size (up to the mask cap), shown as a see-through layer over the image.
// The next images are prefetched (leased); save sends the edit in the background and shows
// the next image at once; a refused or failed save brings that image and its paint back.
(() => {
  const DEPTH = 2;
  const KEEP = 255;  // an edit pixel the labeler did not touch
  const $ = (sel) => element.querySelector(sel);
  const S = {
    rev: null, epoch: null, generation: 0, classes: [], message: "", brush: 0, tool: "brush",
    size: null, opacity: 0.5, overlay: false, tolerance: 24, polygon: null, space: false,
    shown: null, waiting: false, queue: [], sending: new Set(), fetching: false,
    chain: Promise.resolve(), token: 0, stopped: false, stroke: null,
  };
  const log = window.__hitlSegLog = window.__hitlSegLog || { displayed: [], saved: [] };
  // the mask and prediction layers at mask size (off screen: drawView shows them)
  const layer = $("#seg-canvas"), over = $("#seg-pred"), vmask = $("#seg-view-mask");
  const lctx = layer.getContext("2d"), octx = over.getContext("2d");
  const vctx = vmask.getContext("2d");

  const esc = hitlEsc, note = hitlNote("seg");  // hitl/ui/board_feed.js
  const EMPTY = { done: "All labeled ✓", reserved: "Reserved by other labelers", held: "Saving…" };
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
    if (ctx === lctx && item === S.shown) viewPart(item, x0, y0, part);
  }

  const scratch = document.createElement("canvas"), sctx = scratch.getContext("2d");
  function viewPart(item, x0, y0, part) {
    // one painted rectangle onto the frame's canvas, through a small canvas: reading the
    // image-sized layer while a stroke writes it would copy all of it on every move
    const V = view.V, dpr = window.devicePixelRatio || 1, w = part.width, h = part.height;
    scratch.width = w; scratch.height = h;
    sctx.putImageData(part, 0, 0);
    vctx.save();
    vctx.setTransform(V.z * dpr, 0, 0, V.z * dpr, V.tx * dpr, V.ty * dpr);
    vctx.imageSmoothingEnabled = false;
    vctx.beginPath(); vctx.rect(x0, y0, w, h); vctx.clip();
    vctx.clearRect(x0, y0, w, h);
    if (S.overlay && item.pred) {
      vctx.globalAlpha = Math.max(0.6, S.opacity);
      vctx.drawImage(over, x0, y0, w, h, x0, y0, w, h);
    }
    vctx.globalAlpha = S.opacity;
    vctx.drawImage(scratch, x0, y0);
    vctx.restore();
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

  function paintPrediction(item) {
    // the model's mask as class-coloured outlines over a sparse hatching: never mistaken for
    // the labeler's own solid paint
    const { w, h } = item, p = item.pred, colours = lut();
    const img = octx.createImageData(w, h), d = img.data;
    const period = Math.max(4, Math.round(Math.max(w, h) / 100));
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x, v = p[i], c = v > 0 && v <= colours.length ? colours[v - 1] : null;
        if (!c) continue;
        const edge = (x > 0 && p[i - 1] !== v) || (x < w - 1 && p[i + 1] !== v)
          || (y > 0 && p[i - w] !== v) || (y < h - 1 && p[i + w] !== v);
        if (!edge && (x + y) % period !== 0) continue;
        const k = i * 4;
        d[k] = c[0]; d[k + 1] = c[1]; d[k + 2] = c[2]; d[k + 3] = 255;
      }
    }
    octx.putImageData(img, 0, 0);
  }

  function showLayer(item) {
    // whether the mask has paint: an empty one is not drawn at all
    item.hasPaint = item.pos.some((v) => v > 0);
    return item.hasPaint;
  }

  function redraw() {
    const item = S.shown;
    if (!item) return;
    if (showLayer(item)) paintRect(item, 0, 0, item.w, item.h, lctx, item.pos);
    else lctx.clearRect(0, 0, item.w, item.h);
    if (item.pred) paintPrediction(item);
    drawView();
  }

  function drawView() {
    // The mask and the prediction overlay as seen: their visible part drawn into one canvas
    // of the frame's size (nearest pixel), at every view change and paint. The image-sized
    // layers stay off screen: a visible 4000x3000 canvas scaled by CSS cost ~10-90 ms of
    // every zoom and pan frame (bench/bench_browser.py), this costs what the frame shows.
    const dpr = window.devicePixelRatio || 1;
    const W = Math.round(frame.clientWidth * dpr), H = Math.round(frame.clientHeight * dpr);
    if (vmask.width !== W || vmask.height !== H) { vmask.width = W; vmask.height = H; }
    vctx.setTransform(1, 0, 0, 1, 0, 0);
    vctx.clearRect(0, 0, W, H);
    const item = S.shown;
    if (!item) return;
    const V = view.V;
    vctx.imageSmoothingEnabled = false;
    vctx.setTransform(V.z * dpr, 0, 0, V.z * dpr, V.tx * dpr, V.ty * dpr);
    if (S.overlay && item.pred) {
      vctx.globalAlpha = Math.max(0.6, S.opacity);
      vctx.drawImage(over, 0, 0);
    }
    if (item.hasPaint) { vctx.globalAlpha = S.opacity; vctx.drawImage(layer, 0, 0); }
    vctx.globalAlpha = 1;
  }

  function setOpacity() {
    $("#seg-overlay-toggle").checked = S.overlay;
    if (S.shown) drawView();
  }

  // ---- the view: fit, zoom, pan (hitl/ui/seg_view.js) -----------------------------------
  const frame = $(".hb-view"), stage = $(".hb-stage"), cursor = $("#seg-cursor");
  const poly = $("#seg-poly");
  const view = hitlView(frame, stage, (z) => {
    const item = S.shown;
    if (item) place(item, z);
    drawView();
    if (S.hover) placeCursor(S.hover);
  });

  function place(item, z) {
    // the picture for this zoom: the display copy until its own pixels are enlarged, then
    // the full image (asked for once); pixelated past 2x its own pixels
    const copy = item.image.naturalWidth || item.w;
    if (z * item.w / copy > 1.01 && item.fw > copy && !item.full && !item.fullAsked) loadFull(item);
    const want = item.full && z * item.w / copy > 1.01 ? item.full : item.image;
    const shown = $("#seg-image");
    if (shown !== want) {
      want.id = "seg-image"; want.alt = ""; want.style.visibility = shown.style.visibility;
      shown.replaceWith(want);
    }
    stage.classList.toggle("hb-pixelated", z * item.w / (want.naturalWidth || item.w) > 2);
  }

  async function loadFull(item) {
    item.fullAsked = true;
    const again = () => { item.fullAsked = false; };  // a later zoom asks again
    let r;
    try { r = await server.seg_full({ image_id: item.image_id }); } catch (err) { again(); return; }
    if (!r || !r.ok || !r.src) { again(); return; }
    const im = new Image();
    im.draggable = false; im.src = r.src;
    try { await im.decode(); } catch (err) { again(); return; }
    item.full = im; item.rgba = null;  // the wand reads the full picture from now on
    if (item === S.shown) place(item, view.V.z);
  }

  function toPixel(ev) {
    const r = layer.getBoundingClientRect(), item = S.shown;
    return [(ev.clientX - r.left) * item.w / r.width, (ev.clientY - r.top) * item.h / r.height];
  }

  function placeCursor(ev) {
    const item = S.shown, round = S.tool === "brush" || S.tool === "eraser";
    cursor.hidden = !item || !round || S.panning || S.space;
    if (cursor.hidden) return;
    const [x, y] = view.point(ev), d = S.size * view.V.z;
    cursor.style.width = cursor.style.height = d + "px";
    cursor.style.transform = `translate(${x - d / 2}px, ${y - d / 2}px)`;
  }

  // ---- actions on the mask: each one a step to undo (hitl/ui/seg_paint.js) ---------------
  function value() { return S.tool === "eraser" ? 0 : S.brush + 1; }

  function commit(change) {
    const item = change.item;
    if (change.empty) return;
    item.history.push(change); item.future = []; item.edited = true;
    if (item === S.shown) { paintRect(item, ...change.box, lctx, item.pos); showLayer(item); drawView(); }
  }

  function step(back) {
    const item = S.shown;
    if (!item || !item.painted) return;
    const from = back ? item.history : item.future, to = back ? item.future : item.history;
    const change = from.pop();
    if (!change) { note(back ? "Nothing to undo on this image." : "Nothing to redo."); return; }
    if (back) change.undo(); else change.redo();
    to.push(change);
    paintRect(item, ...change.box, lctx, item.pos);
    showLayer(item);
    drawView();
  }

  function pixels(item) {
    // the picture at mask size, for the wand (once per image)
    if (!item.rgba) {
      const c = document.createElement("canvas");
      c.width = item.w; c.height = item.h;
      const x = c.getContext("2d", { willReadFrequently: true });
      x.drawImage(item.full || item.image, 0, 0, item.w, item.h);
      item.rgba = x.getImageData(0, 0, item.w, item.h).data;
    }
    return item.rgba;
  }

  function drawPolygon(ev) {
    // hidden when no polygon is open: its non-scaling outline would repaint the stage on
    // every zoom step
    poly.style.display = S.polygon ? "" : "none";
    const pts = S.polygon || [];
    const hover = ev && S.polygon ? [toPixel(ev)] : [];
    poly.querySelector("polyline").setAttribute("points",
      pts.concat(hover).map((p) => p.join(",")).join(" "));
    poly.querySelectorAll("circle").forEach((c) => c.remove());
    if (pts.length) {
      const dot = document.createElementNS("http://www.w3.org/2000/svg", "circle");
      dot.setAttribute("cx", pts[0][0]); dot.setAttribute("cy", pts[0][1]);
      dot.setAttribute("r", 6 / view.V.z);
      poly.appendChild(dot);
    }
  }

  function closePolygon() {
    const pts = S.polygon;
    S.polygon = null; drawPolygon();
    if (!pts || pts.length < 3 || !S.shown) return;
    const change = new hitlPaint.Change(S.shown, value());
    hitlPaint.polygon(change, pts);
    commit(change);
  }

  function toolDown(ev) {
    const item = S.shown, pt = toPixel(ev);
    if (S.tool === "brush" || S.tool === "eraser") {
      // the class (or eraser) and size are fixed when the stroke starts
      const change = new hitlPaint.Change(item, value());
      S.stroke = { change, radius: S.size / 2, last: pt, id: ev.pointerId };
      hitlPaint.disc(change, pt[0], pt[1], S.stroke.radius);
      item.edited = true;
      if (change.value) item.hasPaint = true;
      paintRect(item, ...change.box, lctx, item.pos);
    } else if (S.tool === "fill" || S.tool === "wand") {
      if (pt[0] < 0 || pt[1] < 0 || pt[0] >= item.w || pt[1] >= item.h) return;
      const change = new hitlPaint.Change(item, value());
      if (S.tool === "fill") hitlPaint.fill(change, pt[0], pt[1]);
      else hitlPaint.wand(change, pt[0], pt[1], pixels(item), S.tolerance);
      commit(change);
    } else if (S.tool === "polygon") {
      const first = S.polygon && S.polygon[0];
      if (first && S.polygon.length >= 3
          && Math.hypot(first[0] - pt[0], first[1] - pt[1]) * view.V.z < 8) closePolygon();
      else { (S.polygon = S.polygon || []).push(pt); drawPolygon(ev); }
    }
  }

  function strokeTo(pt) {
    const s = S.stroke, item = S.shown;
    hitlPaint.line(s.change, s.last, pt, s.radius);
    s.last = pt;
    paintRect(item, ...s.change.box, lctx, item.pos);
  }

  function endStroke() {
    const s = S.stroke;
    S.stroke = null;
    if (s && !s.change.empty) { s.change.item.history.push(s.change); s.change.item.future = []; }
  }

  // pointers: left button paints (or pans while Space is held), the middle button pans, two
  // fingers zoom and pan; a stroke a second finger joins is taken back
  const touches = new Map();
  frame.addEventListener("pointerdown", (ev) => {
    if (!S.shown || !S.shown.painted) return;
    ev.preventDefault();
    try { frame.setPointerCapture(ev.pointerId); } catch (err) { /* a synthetic pointer */ }
    if (ev.pointerType === "touch") touches.set(ev.pointerId, view.point(ev));
    if (touches.size === 2) {
      if (S.stroke) {
        S.stroke.change.undo(); paintRect(S.shown, ...S.stroke.change.box, lctx, S.shown.pos);
        S.stroke = null; showLayer(S.shown); drawView();
      }
      const [a, b] = [...touches.values()];
      S.pinch = { d: Math.hypot(a[0] - b[0], a[1] - b[1]), z: view.V.z, mid: [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2] };
      return;
    }
    if (ev.button === 1 || (ev.button === 0 && S.space)) {
      S.panning = { id: ev.pointerId, at: [ev.clientX, ev.clientY] };
      frame.classList.add("hb-panning"); placeCursor(ev);
      return;
    }
    if (ev.button === 0) toolDown(ev);
  });
  frame.addEventListener("pointermove", (ev) => {
    S.hover = ev;
    placeCursor(ev);
    if (touches.has(ev.pointerId)) touches.set(ev.pointerId, view.point(ev));
    if (S.pinch && touches.size === 2) {
      const [a, b] = [...touches.values()], p = S.pinch;
      const mid = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
      view.zoomAt(p.z * Math.hypot(a[0] - b[0], a[1] - b[1]) / Math.max(1, p.d), mid[0], mid[1]);
      view.panBy(mid[0] - p.mid[0], mid[1] - p.mid[1]);
      p.mid = mid;
      return;
    }
    if (S.panning && ev.pointerId === S.panning.id) {
      view.panBy(ev.clientX - S.panning.at[0], ev.clientY - S.panning.at[1]);
      S.panning.at = [ev.clientX, ev.clientY];
      return;
    }
    if (S.polygon) drawPolygon(ev);
    if (!S.stroke || ev.pointerId !== S.stroke.id) return;
    ev.preventDefault();
    const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [ev];
    for (const e of (events.length ? events : [ev])) strokeTo(toPixel(e));
  });
  const pointerEnd = (ev) => {
    touches.delete(ev.pointerId);
    if (touches.size < 2) S.pinch = null;
    if (S.panning && ev.pointerId === S.panning.id) { S.panning = null; frame.classList.remove("hb-panning"); }
    if (S.stroke && ev.pointerId === S.stroke.id) endStroke();
  };
  frame.addEventListener("pointerup", pointerEnd);
  frame.addEventListener("pointercancel", pointerEnd);
  frame.addEventListener("pointerleave", () => { S.hover = null; cursor.hidden = true; });
  frame.addEventListener("dblclick", (ev) => { if (S.polygon) { ev.preventDefault(); closePolygon(); } });
  frame.addEventListener("auxclick", (ev) => ev.preventDefault());
  frame.addEventListener("dragstart", (ev) => ev.preventDefault());
  document.addEventListener("keyup", (ev) => {
    if (ev.key === " ") { S.space = false; frame.classList.remove("hb-grab"); }
  });

  // ---- tools ------------------------------------------------------------------------------
  const TOOLS = { brush: "Brush (D)", eraser: "Eraser (E)", fill: "Fill (L)",
                  polygon: "Polygon (P)", wand: "Wand (W)" };
  function renderTools() {
    const box = $("#seg-classes");
    box.innerHTML = S.classes.map((c, i) => {
      const key = i < 10 ? `${(i + 1) % 10} ` : "";
      const on = S.tool !== "eraser" && i === S.brush ? " hb-primary" : "";
      return `<button id="seg-brush-${i}" class="hb-btn${on}" data-slot="${i}"><span
        class="hb-swatch" style="background:${esc(c.colour)}"></span>${esc(key + c.name)}</button>`;
    }).join("");
    $("#seg-tools").innerHTML = Object.entries(TOOLS).map(([tool, text]) =>
      `<button id="seg-tool-${tool}" data-tool="${tool}"
        class="hb-btn${S.tool === tool ? " hb-primary" : ""}">${text}</button>`).join("");
    frame.dataset.tool = S.tool;
    const select = $(".hb-class"), keep = select.value;
    select.innerHTML = `<option value=""></option>` + S.classes.map(
      (c) => `<option${c.name === keep ? " selected" : ""}>${esc(c.name)}</option>`).join("");
    $("#seg-size").value = S.size || 12;
    $("#seg-size-value").textContent = S.size || 12;
    if (S.rev !== null && !S.classes.length) note("Add classes in the Classes tab to start painting.");
  }

  function setTool(tool) {
    if (S.polygon && tool !== "polygon") { S.polygon = null; drawPolygon(); }
    S.tool = tool; renderTools();
    if (S.hover) placeCursor(S.hover);
  }

  function choose(slot) {
    if (slot >= S.classes.length) { note(`There is no class ${slot + 1}.`, true); return; }
    S.brush = slot;
    if (S.tool === "eraser") S.tool = "brush";
    renderTools();
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
    item.history = []; item.future = [];
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
      for (const c of [layer, over]) { c.width = item.w; c.height = item.h; }
      poly.setAttribute("viewBox", `0 0 ${item.w} ${item.h}`);
      S.polygon = null; drawPolygon();
      view.setSize(item.w, item.h);
      redraw();
      requestAnimationFrame(() => {
        if (token !== S.token) return;
        item.painted = true;
        log.displayed.push({ image_id: item.image_id, at: performance.now() });
      });
    }));
  }

  function showNothing(text, state) {
    S.shown = null; S.token++;
    renderTitle(null, text ? EMPTY[state] || "No image" : "Loading…");
    $("#seg-image").style.visibility = "hidden";
    lctx.clearRect(0, 0, layer.width, layer.height);
    octx.clearRect(0, 0, over.width, over.height);
    drawView();
    if (text) note(text);
    $("#seg-note").classList.toggle("hb-done", state === "done");
  }

  async function loadPrediction(item, accept) {
    const r = await server.seg_prediction({ image_id: item.image_id, rev: S.rev });
    if (!r || !r.ok || !r.mask) {
      if (item === S.shown) note((r && r.error) || "No prediction for this image yet.", accept);
      return false;
    }
    item.pred = await decodePositions(r.mask, item.w, item.h);
    if (item === S.shown && item.pred) { paintPrediction(item); drawView(); }
    return !!item.pred;
  }

  async function accept() {
    const item = S.shown;
    if (!item || !item.painted) return;
    if (!item.pred && !(await loadPrediction(item, true))) return;
    if (item !== S.shown) return;
    const change = new hitlPaint.Change(item, 0);
    hitlPaint.whole(change, item.pred);
    commit(change);
    note("Prediction loaded as the mask: correct it, then save (Enter).");
  }

  // ---- save, skip, undo, open ------------------------------------------------------------
  function save(op) {
    const item = S.shown;
    if (!item || !item.painted || S.message) return;
    if (S.polygon && op === "save") { closePolygon(); return; }  // Enter closes a polygon first
    if (op === "save" && !item.pos.some((v) => v > 0)) {
      note(`Nothing is painted on image ${item.image_id}: nothing saved (Skip passes it).`, true);
      return;
    }
    const payload = { op, image_id: item.image_id, rev: S.rev };
    log.saved.push({ image_id: item.image_id, at: performance.now(), op });
    S.sending.add(item.image_id);
    const next = S.queue.shift();
    if (next) show(next); else { S.waiting = true; showNothing(); }
    refill();
    // the edit is encoded once the next image is on screen
    const send = () => new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)))
      .then(() => server.seg_act(op === "save" ? { ...payload, edit: encodeEdit(item) } : payload));
    S.chain = S.chain.then(send).then((r) => {
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
    prefix: "seg", tab: "segmentation", depth: DEPTH, take: (a) => server.seg_take(a),
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
    else if (btn.dataset.tool) setTool(btn.dataset.tool);
    else if (btn.id === "seg-stroke-undo") step(true);
    else if (btn.id === "seg-stroke-redo") step(false);
    else if (btn.id === "seg-fit") view.fit();
    else if (btn.id === "seg-one") oneToOne();
    else if (btn.id === "seg-help-button") help();
    else if (btn.id === "seg-save") save("save");
    else if (btn.id === "seg-skip") save("skip");
    else if (btn.id === "seg-undo") undo();
    else if (btn.id === "seg-prev") open({ step: -1 });
    else if (btn.id === "seg-next") open({ step: 1 });
    else if (btn.id === "seg-accept") accept();
    else if (btn.id === "seg-clear" && S.shown && S.shown.painted) {
      const change = new hitlPaint.Change(S.shown, 0);
      hitlPaint.whole(change, null);
      commit(change);
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
  $("#seg-tolerance").addEventListener("input", (ev) => { S.tolerance = parseInt(ev.target.value, 10); });
  $("#seg-overlay-toggle").addEventListener("change", (ev) => toggleOverlay(ev.target.checked));
  // a chosen option gives the keys back to the board (a focused <select> keeps them otherwise)
  $(".hb-strategy").addEventListener("change", (ev) => { ev.target.blur(); restart(); });
  $(".hb-class").addEventListener("change", (ev) => {
    ev.target.blur();
    if ($(".hb-strategy").value === "class") restart();
  });

  function oneToOne() {
    // one image pixel per screen pixel, around the frame's centre
    const item = S.shown;
    if (!item) return;
    view.zoomAt(item.w / item.fw / (window.devicePixelRatio || 1), ...view.centre());
  }

  function help(on) {
    const box = $("#seg-help");
    box.hidden = on === undefined ? !box.hidden : !on;
  }

  function toggleOverlay(on) {
    S.overlay = on; setOpacity();
    if (on && S.shown && !S.shown.pred) loadPrediction(S.shown, false);
  }

  window.hitlSeg = {
    element,
    key(key) {
      if (/^[0-9]$/.test(key)) { choose(key === "0" ? 9 : parseInt(key, 10) - 1); return true; }
      const k = key.length === 1 ? key.toLowerCase() : key;
      const act = {
        Enter: () => save("save"), s: () => save("skip"), a: accept, u: undo,
        Undo: () => step(true), Redo: () => step(false),
        e: () => setTool(S.tool === "eraser" ? "brush" : "eraser"), d: () => setTool("brush"),
        l: () => setTool("fill"), p: () => setTool("polygon"), w: () => setTool("wand"),
        m: () => toggleOverlay(!S.overlay), n: () => open({ step: 1 }), b: () => open({ step: -1 }),
        f: () => view.fit(), o: oneToOne, "?": () => help(),
        "+": () => view.zoomAt(view.V.z * 1.25, ...view.centre()),
        "=": () => view.zoomAt(view.V.z * 1.25, ...view.centre()),
        "-": () => view.zoomAt(view.V.z / 1.25, ...view.centre()),
        " ": () => { S.space = true; frame.classList.add("hb-grab"); cursor.hidden = true; },
        Escape: () => { help(false); S.polygon = null; drawPolygon(); },
        "[": () => { S.size = Math.max(1, S.size - (S.size > 10 ? 2 : 1)); renderTools(); },
        "]": () => { S.size = Math.min(200, S.size + (S.size >= 10 ? 2 : 1)); renderTools(); },
        g: () => { gotoBox.focus(); gotoBox.select(); },
      }[k];
      if (!act) return false;
      act();
      return true;
    },
    state: S,
  };
  showNothing();
  start(() => window.hitlSeg.pause);  // paused only by tests
})();
