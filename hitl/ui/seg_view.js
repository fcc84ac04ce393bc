// The painter's view (hitl/ui/seg_board.js): the image and its mask layers sit in a stage of
// the mask's own size (one CSS pixel per mask pixel) that one CSS transform scales and moves
// inside a fixed frame, so the aspect ratio is always the image's, zoom and pan never redraw a
// pixel, and a pointer maps to a mask pixel through the stage's box on screen.
// `frame` is the clipping box, `stage` the transformed one; `changed(z)` is told every move.
function hitlView(frame, stage, changed) {
  const V = { w: 0, h: 0, z: 1, tx: 0, ty: 0, fitted: true };

  function apply() {
    stage.style.transform = `translate(${V.tx}px, ${V.ty}px) scale(${V.z})`;
    changed(V.z);
  }

  function fitScale() {
    const W = frame.clientWidth, H = frame.clientHeight;
    return V.w && V.h && W && H ? Math.min(W / V.w, H / V.h) : 1;
  }

  function clamp() {
    // some of the image stays in the frame whatever the zoom and pan
    const W = frame.clientWidth, H = frame.clientHeight, iw = V.w * V.z, ih = V.h * V.z;
    const keep = 40;
    V.tx = Math.min(W - keep, Math.max(keep - iw, V.tx));
    V.ty = Math.min(H - keep, Math.max(keep - ih, V.ty));
  }

  function fit() {
    // the whole image, as large as the frame allows, centred (small images grow to it)
    V.z = fitScale(); V.fitted = true;
    V.tx = (frame.clientWidth - V.w * V.z) / 2; V.ty = (frame.clientHeight - V.h * V.z) / 2;
    apply();
  }

  function limits() {
    const f = fitScale();
    return [Math.min(f, 1) / 4, Math.max(64, f * 4)];
  }

  function zoomAt(z, cx, cy) {
    // to scale z, keeping the image point under frame point (cx, cy) where it is
    const [lo, hi] = limits();
    z = Math.min(hi, Math.max(lo, z));
    V.tx = cx - (cx - V.tx) * z / V.z; V.ty = cy - (cy - V.ty) * z / V.z;
    V.z = z; V.fitted = false; clamp(); apply();
  }

  function centre() {
    return [frame.clientWidth / 2, frame.clientHeight / 2];
  }

  function panBy(dx, dy) {
    V.tx += dx; V.ty += dy; V.fitted = false; clamp(); apply();
  }

  function setSize(w, h, keep) {
    // a new image: fit it, unless the same size is shown at a chosen zoom (a series of slices)
    const same = w === V.w && h === V.h;
    stage.style.width = w + "px"; stage.style.height = h + "px";
    V.w = w; V.h = h;
    if (keep && same && !V.fitted) apply(); else fit();
  }

  function point(ev) {
    const r = frame.getBoundingClientRect();
    return [ev.clientX - r.left, ev.clientY - r.top];
  }

  frame.addEventListener("wheel", (ev) => {
    if (!V.w) return;
    ev.preventDefault();
    const [x, y] = point(ev), unit = ev.deltaMode === 1 ? 33 : ev.deltaMode === 2 ? 400 : 1;
    zoomAt(V.z * Math.exp(-ev.deltaY * unit * 0.0015), x, y);
  }, { passive: false });

  new ResizeObserver(() => { if (V.w) { if (V.fitted) fit(); else { clamp(); apply(); } } }).observe(frame);

  return { V, fit, zoomAt, panBy, setSize, point, centre };
}
