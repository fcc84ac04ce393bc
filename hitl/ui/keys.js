// One keyboard script for the whole app: keys go to the labeling board of the visible tab
// (hitl/ui/cls_board.js, seg_board.js), which resolves them against its own screen.
(() => {
  if (window.__hitlKeys) return;
  window.__hitlKeys = true;
  const visible = (el) => el && el.offsetParent !== null;
  const activeBoard = () => {
    if (visible(document.getElementById("cls-title"))) return window.hitlBoard;
    if (visible(document.getElementById("seg-title"))) return window.hitlSeg;
    return null;
  };
  const typing = (t) => {
    if (!t) return false;
    if (t.isContentEditable || t.tagName === "TEXTAREA" || t.tagName === "SELECT") return true;
    // sliders and check boxes keep focus after a click: keys still label and paint
    return t.tagName === "INPUT" && !["range", "checkbox", "radio", "button"].includes(t.type);
  };
  document.addEventListener("keydown", (ev) => {
    if (typing(ev.target) || ev.altKey || ev.metaKey) return;
    const board = activeBoard();
    if (!board || !board.element.isConnected) return;
    let done = false;
    if (ev.ctrlKey) {
      // Ctrl+Z undoes (a stroke in the painter, the last label on the board); Ctrl+Shift+Z
      // and Ctrl+Y redo a stroke
      const k = ev.key.toLowerCase();
      if (k === "z") done = board.key(ev.shiftKey ? "Redo" : "Undo");
      else if (k === "y") done = board.key("Redo");
    } else {
      done = board.key(ev.key);
    }
    if (done) ev.preventDefault();
  }, true);
})();
