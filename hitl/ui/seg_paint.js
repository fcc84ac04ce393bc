// The painter's pixel operations (hitl/ui/seg_board.js): a mask is `pos` (class position per
// pixel, 0 = unlabeled) and `touched` (1 where the labeler changed it: only those pixels are
// sent) at the item's mask size w x h. Every operation writes through one `Change`, which
// remembers each pixel's old value once, so a stroke, a fill or a polygon undoes and redoes
// as one step before the mask is saved.
const hitlPaint = (() => {
  class Change {
    constructor(item, value) {
      this.item = item; this.value = value;
      this.idx = []; this.oldPos = []; this.oldTouched = [];
      this.box = [Infinity, Infinity, -Infinity, -Infinity];
    }
    set(i) {
      // one pixel to `value`; a pixel already at it (and touched) is not recorded twice
      const it = this.item;
      if (it.pos[i] === this.value && it.touched[i]) return;
      this.idx.push(i); this.oldPos.push(it.pos[i]); this.oldTouched.push(it.touched[i]);
      it.pos[i] = this.value; it.touched[i] = 1;
      const x = i % it.w, y = (i - x) / it.w, b = this.box;
      if (x < b[0]) b[0] = x; if (y < b[1]) b[1] = y;
      if (x + 1 > b[2]) b[2] = x + 1; if (y + 1 > b[3]) b[3] = y + 1;
    }
    undo() {
      const it = this.item;
      for (let k = this.idx.length - 1; k >= 0; k--) {
        it.pos[this.idx[k]] = this.oldPos[k]; it.touched[this.idx[k]] = this.oldTouched[k];
      }
    }
    redo() {
      const it = this.item;
      for (const i of this.idx) { it.pos[i] = this.value; it.touched[i] = 1; }
    }
    get empty() { return this.idx.length === 0; }
  }

  function disc(change, cx, cy, radius) {
    // every pixel whose centre lies within `radius` of (cx, cy); at least the pixel under it
    const it = change.item, r2 = radius * radius;
    const y0 = Math.max(0, Math.floor(cy - radius)), y1 = Math.min(it.h - 1, Math.ceil(cy + radius));
    const x0 = Math.max(0, Math.floor(cx - radius)), x1 = Math.min(it.w - 1, Math.ceil(cx + radius));
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        const dx = x + 0.5 - cx, dy = y + 0.5 - cy;
        if (dx * dx + dy * dy <= r2) change.set(y * it.w + x);
      }
    }
    const px = Math.floor(cx), py = Math.floor(cy);
    if (px >= 0 && py >= 0 && px < it.w && py < it.h) change.set(py * it.w + px);
  }

  function line(change, a, b, radius) {
    // discs along a segment, close enough to leave no gap
    const steps = Math.max(1, Math.ceil(Math.hypot(b[0] - a[0], b[1] - a[1]) / Math.max(0.5, radius / 2)));
    for (let i = 1; i <= steps; i++) {
      disc(change, a[0] + (b[0] - a[0]) * i / steps, a[1] + (b[1] - a[1]) * i / steps, radius);
    }
  }

  function flood(change, x, y, same) {
    // the 4-connected region from (x, y) of pixels for which same(i) holds, scanline by scanline
    const it = change.item, w = it.w, h = it.h;
    x = Math.floor(x); y = Math.floor(y);
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    const seen = new Uint8Array(w * h), stack = [y * w + x];
    while (stack.length) {
      const start = stack.pop();
      if (seen[start] || !same(start)) continue;
      const row = start - (start % w);
      let l = start, r = start;
      while (l > row && !seen[l - 1] && same(l - 1)) l--;
      while (r < row + w - 1 && !seen[r + 1] && same(r + 1)) r++;
      for (let i = l; i <= r; i++) {
        seen[i] = 1;
        if (i >= w && !seen[i - w]) stack.push(i - w);
        if (i + w < w * h && !seen[i + w]) stack.push(i + w);
      }
      for (let i = l; i <= r; i++) change.set(i);
    }
  }

  function fill(change, x, y) {
    // the closed region of the mask under (x, y): same class, bounded by other paint
    const it = change.item, i0 = Math.floor(y) * it.w + Math.floor(x), v = it.pos[i0];
    flood(change, x, y, (i) => it.pos[i] === v);
  }

  function wand(change, x, y, rgba, tolerance) {
    // pixels of similar colour connected to (x, y): every channel within `tolerance`
    const it = change.item, i0 = (Math.floor(y) * it.w + Math.floor(x)) * 4;
    const r = rgba[i0], g = rgba[i0 + 1], b = rgba[i0 + 2];
    flood(change, x, y, (i) => {
      const k = i * 4;
      return Math.abs(rgba[k] - r) <= tolerance && Math.abs(rgba[k + 1] - g) <= tolerance
        && Math.abs(rgba[k + 2] - b) <= tolerance;
    });
  }

  function polygon(change, pts) {
    // pixels whose centres are inside the polygon (even-odd rule)
    const it = change.item, ys = pts.map((p) => p[1]);
    const y0 = Math.max(0, Math.floor(Math.min(...ys))), y1 = Math.min(it.h - 1, Math.ceil(Math.max(...ys)));
    for (let y = y0; y <= y1; y++) {
      const cy = y + 0.5, xs = [];
      for (let k = 0; k < pts.length; k++) {
        const [ax, ay] = pts[k], [bx, by] = pts[(k + 1) % pts.length];
        if ((ay <= cy && by > cy) || (by <= cy && ay > cy)) xs.push(ax + (cy - ay) * (bx - ax) / (by - ay));
      }
      xs.sort((a, b) => a - b);
      for (let k = 0; k + 1 < xs.length; k += 2) {
        const from = Math.max(0, Math.ceil(xs[k] - 0.5)), to = Math.min(it.w - 1, Math.floor(xs[k + 1] - 0.5));
        for (let x = from; x <= to; x++) change.set(y * it.w + x);
      }
    }
  }

  function whole(change, positions) {
    // every pixel to the given positions (Clear, the prediction as the mask): one snapshot
    // of the layer before, not a list of pixels
    const it = change.item, before = [it.pos.slice(), it.touched.slice()];
    const after = positions ? positions.slice() : new Uint8Array(it.pos.length);
    change.redo = () => { it.pos.set(after); it.touched.fill(1); };
    change.undo = () => { it.pos.set(before[0]); it.touched.set(before[1]); };
    change.redo();
    change.box = [0, 0, it.w, it.h];
    change.idx.push(0);  // not empty: it is a step to undo
  }

  return { Change, disc, line, fill, wand, polygon, whole };
})();
