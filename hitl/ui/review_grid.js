// The review grid's script (gr.HTML js_on_load; `element` is the component's root).
// Marks live on the cells (data-mark: "" = fine, "!" = not this class, a name = that class);
// window.hitlReviewPayload() hands the page as shown, with its marks, to the accept event.
const grid = () => document.getElementById("rev-grid");
const cells = () => Array.from(document.querySelectorAll("#rev-grid .rev-cell"));
const visible = (el) => el && el.offsetParent !== null;

function setMark(cell, mark) {
  const g = grid();
  cell.dataset.mark = mark;
  cell.classList.toggle("marked", mark !== "");
  const tag = cell.querySelector(".rev-tag");
  if (tag) tag.textContent = mark === "" ? "" : mark === "!" ? "✗ not " + g.dataset.class : "→ " + mark;
}

function setCursor(index) {
  const all = cells();
  if (!all.length) return;
  const i = Math.max(0, Math.min(all.length - 1, index));
  all.forEach((c, j) => c.classList.toggle("cursor", j === i));
  window.__hitlReviewCursor = i;
}

element.addEventListener("click", (ev) => {
  const cell = ev.target.closest(".rev-cell");
  if (!cell) return;
  setCursor(cells().indexOf(cell));
  setMark(cell, cell.dataset.mark ? "" : "!");
});

window.hitlReviewPayload = () => {
  const g = grid();
  if (!g) return JSON.stringify({ ids: [], class_name: "", marks: {} });
  const marks = {};
  cells().forEach((c) => {
    if (c.dataset.mark) marks[c.dataset.id] = c.dataset.mark === "!" ? "" : c.dataset.mark;
  });
  const className = g.dataset.mode === "review" ? g.dataset.class : "";
  return JSON.stringify({ ids: JSON.parse(g.dataset.ids), class_name: className, marks });
};

if (!window.__hitlReviewKeys) {
  window.__hitlReviewKeys = true;
  const click = (id) => {
    const el = document.getElementById(id);
    const button = el && (el.tagName === "BUTTON" ? el : el.querySelector("button") || el);
    if (button) button.click();
    return Boolean(button);
  };
  document.addEventListener("keydown", (ev) => {
    const g = grid();
    if (!visible(g) || ev.altKey || ev.metaKey || ev.ctrlKey) return;
    const t = ev.target;
    const tag = (t && t.tagName) || "";
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (t && t.isContentEditable)) return;
    const all = cells();
    const at = window.__hitlReviewCursor || 0;
    const cols = Math.max(1, Math.round(g.clientWidth / ((all[0] && all[0].clientWidth + 6) || 1)));
    const key = ev.key;
    let done = true;
    if (key === "Enter") done = click("rev-accept");
    else if (key === "u" || key === "U") done = click("rev-undo");
    else if (key === "ArrowRight") setCursor(at + 1);
    else if (key === "ArrowLeft") setCursor(at - 1);
    else if (key === "ArrowDown") setCursor(at + cols);
    else if (key === "ArrowUp") setCursor(at - cols);
    else if ((key === "x" || key === "X" || key === " ") && all[at]) {
      setCursor(at);
      setMark(all[at], all[at].dataset.mark ? "" : "!");
    } else if (/^[0-9]$/.test(key) && all[at]) {
      const names = JSON.parse(g.dataset.classes || "[]");
      const name = names[key === "0" ? 9 : parseInt(key, 10) - 1];
      if (name === undefined) return;
      setCursor(at);
      setMark(all[at], name === g.dataset.class ? "" : name);
    } else done = false;
    if (done) ev.preventDefault();
  }, true);
}
setCursor(0);
if (typeof watch === "function") watch("value", () => setCursor(0));
