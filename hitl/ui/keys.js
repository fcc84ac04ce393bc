// One keyboard script for the whole app: keys click buttons by elem_id in the visible tab.
(() => {
  if (window.__hitlKeys) return;
  window.__hitlKeys = true;
  const visible = (el) => el && el.offsetParent !== null;
  const click = (id) => {
    const el = document.getElementById(id);
    if (!el) return false;
    const button = el.tagName === "BUTTON" ? el : el.querySelector("button") || el;
    button.click();
    return true;
  };
  const activeTab = () => {
    if (visible(document.getElementById("cls-title"))) return "cls";
    if (visible(document.getElementById("seg-title"))) return "seg";
    return null;
  };
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    const tag = (t && t.tagName) || "";
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (t && t.isContentEditable)) return;
    if (ev.altKey || ev.metaKey) return;
    const tab = activeTab();
    if (!tab) return;
    const key = ev.key;
    let done = false;
    if (ev.ctrlKey) {
      if (key === "z" || key === "Z") {
        if (tab === "cls" && window.hitlBoard) done = window.hitlBoard.key("u");
        else done = click(tab + "-undo");
      }
    } else if (tab === "cls") {
      // the Classification board (hitl/ui/cls_board.js) resolves keys against its own screen
      const board = window.hitlBoard;
      if (board && board.element.isConnected) done = board.key(key);
    } else if (tab === "seg") {
      if (/^[0-9]$/.test(key)) {
        const slot = key === "0" ? 9 : parseInt(key, 10) - 1;
        done = click("seg-brush-" + slot);
      } else if (key === "Enter" || key === "s" || key === "S") done = click("seg-save");
      else if (key === "n" || key === "N") done = click("seg-next");
      else if (key === "b" || key === "B") done = click("seg-prev");
      else if (key === "a" || key === "A") done = click("seg-accept");
      else if (key === "u" || key === "U") done = click("seg-undo");
      else if (key === "m" || key === "M") {
        const box = document.querySelector("#seg-overlay-toggle input");
        if (box) { box.click(); done = true; }
      }
    }
    if (!done && (key === "g" || key === "G")) {
      const input = document.querySelector("#" + tab + "-goto textarea, #" + tab + "-goto input");
      if (input) { input.focus(); input.select(); done = true; }
    }
    if (done) ev.preventDefault();
  }, true);
})();
