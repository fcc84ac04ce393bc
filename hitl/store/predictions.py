"""Published predictions and models, and the counts the stats read."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from hitl.store.common import (
    SESSION_TABLES,
    StoreError,
    current_time,
    find_sorted,
)


class Predictions:
    """Published predictions and models, and the counts the stats read."""

    # ---- predictions and models -------------------------------------------------------------
    def next_model_version(self) -> int:
        return (self._one("SELECT max(version) FROM models") or 0) + 1

    def record_model(self, version: int, task: str, backbone: str, mode: str, n_labels: int,
                     val_accuracy: float | None = None, val_miou: float | None = None,
                     metrics: dict | None = None) -> None:
        self._write(lambda cur: cur.execute(
            "INSERT OR REPLACE INTO models (version, task, backbone, mode, created_at, "
            "n_labels, val_accuracy, val_miou, metrics) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [version, task, backbone, mode, current_time(), n_labels, val_accuracy,
             val_miou, json.dumps(metrics or {})]), moves=("models",))

    def models(self) -> pd.DataFrame:
        return self._cursor().execute(
            "SELECT version, task, backbone, mode, created_at, n_labels, val_accuracy, "
            "val_miou, metrics FROM models ORDER BY version").df()

    def latest_model(self) -> dict | None:
        """The newest model's row (every stats tick asks; kept until the next record_model)."""
        return self._latest_model.get() or None

    def _read_latest_model(self) -> dict:
        rows = self._cursor().execute(
            "SELECT version, task, backbone, mode, created_at, n_labels, val_accuracy, "
            "val_miou, metrics FROM models ORDER BY version DESC LIMIT 1").fetchall()
        if not rows:
            return {}
        keys = ["version", "task", "backbone", "mode", "created_at", "n_labels",
                "val_accuracy", "val_miou", "metrics"]
        model = dict(zip(keys, rows[0]))
        model["metrics"] = json.loads(model["metrics"] or "{}")
        return model

    def _publish(self, table: str, frame: pd.DataFrame, columns: str, replace_all: bool,
                 moves: tuple[str, ...] = ()) -> None:
        """Replace a prediction table's rows (all, or only the frame's images) in one
        transaction, so readers see either the old or the new predictions."""
        def write(cur):
            cur.register("new_rows", frame)
            if replace_all:
                cur.execute(f"DELETE FROM {table}")
            else:
                cur.execute(f"DELETE FROM {table} WHERE image_id IN "
                            "(SELECT image_id FROM new_rows)")
            cur.execute(f"INSERT INTO {table} SELECT {columns} FROM new_rows")
            cur.unregister("new_rows")
        self._write(write, moves=moves)
        self.feed.publish("predictions")

    def write_predictions(self, frame: pd.DataFrame, replace_all: bool = True) -> None:
        """Publish class predictions (image_id, model_version, class_id, probability, margin,
        entropy); with replace_all=False only the given images are replaced."""
        self._publish("predictions", frame, "image_id, model_version, class_id, probability, "
                      "margin, entropy", replace_all, moves=("predictions",))
        self._score_orders()  # loaded here, in the writer's thread, not on a key press

    def write_seg_predictions(self, frame: pd.DataFrame, replace_all: bool = True) -> None:
        """Publish per-image segmentation summaries (image_id, model_version, entropy,
        fractions as a list of per-class fractions in class-position order)."""
        self._publish("seg_predictions", frame,
                      "image_id, model_version, entropy, fractions::FLOAT[]", replace_all)

    def prediction(self, image_id: int) -> tuple[int, float, int] | None:
        """(class id, probability, model version) of one image's current prediction, from the
        in-memory copy (the table has no index: a lookup there scans every prediction)."""
        cache = self._predictions_copy.get()
        i, found = find_sorted(cache["image_id"], int(image_id))
        if not found:
            return None
        return (int(cache["class_id"][i]), float(cache["probability"][i]),
                int(cache["model_version"][i]))

    def predictions_frame(self, limit: int | None = None) -> pd.DataFrame:
        """Current class predictions by image id (the first `limit`), from the in-memory copies:
        the API asks this often, and the equivalent join over every prediction made DuckDB
        allocate (and the process keep) megabytes per call at 100,000 images."""
        cache, cat = self._predictions_copy.get(), self._catalogue()
        names = {c.id: c.name for c in self.classes()}
        ids = cache["image_id"]
        pos, keep = find_sorted(cat["id"], ids)
        keep &= np.isin(cache["class_id"], list(names))
        rows = np.flatnonzero(keep)[:None if limit is None else max(0, int(limit))]
        return pd.DataFrame({
            "image_id": ids[rows], "filename": cat["filename"][pos[rows]],
            "label": [names[int(c)] for c in cache["class_id"][rows]],
            "probability": cache["probability"][rows], "margin": cache["margin"][rows],
            "entropy": cache["entropy"][rows], "model_version": cache["model_version"][rows]})

    def clear_predictions(self) -> None:
        def clear(cur):
            cur.execute("DELETE FROM predictions")
            cur.execute("DELETE FROM seg_predictions")
        self._write(clear, moves=("predictions",))
        self.feed.publish("predictions")

    # ---- stats ---------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Images (from the in-memory catalogue), labels, masks and skips (once per revision)."""
        cat = self._catalogue()
        done = self.index.per_revision("counts", lambda: self._rows(
            "SELECT (SELECT count(*) FROM labels), (SELECT count(*) FROM masks), "
            "(SELECT count(*) FROM skips)")[0])
        return dict(zip(["total", "readable", "labels", "masks", "skips"],
                        (int(cat["id"].size), int(cat["readable_ids"].size), *done)))

    def live_accuracy(self, last_n: int) -> tuple[float | None, int]:
        """Share of the last N labels whose shown prediction was right, and how many counted."""
        row = self.index.per_revision(("live", int(last_n)), lambda: self._rows(
            "SELECT avg(CASE WHEN shown_class_id = class_id THEN 1.0 ELSE 0.0 END), count(*) "
            "FROM (SELECT * FROM labels WHERE shown_class_id IS NOT NULL "
            "ORDER BY created_at DESC LIMIT ?)", [int(last_n)])[0])
        return (None if row[1] == 0 else float(row[0]), int(row[1]))

    def user_stats(self) -> list[tuple[str, int, float]]:
        """(user, labels + masks + skips done, actions per hour over their active span), once
        per revision."""
        return self.index.per_revision("user_stats", lambda: self._rows(
            "SELECT \"user\", count(*) AS n, "
            "CASE WHEN count(*) > 1 AND epoch(max(\"at\")) > epoch(min(\"at\")) "
            "THEN (count(*) - 1) * 3600.0 / (epoch(max(\"at\")) - epoch(min(\"at\"))) END "
            "FROM events WHERE action IN ('label', 'mask', 'skip') AND NOT undone "
            "GROUP BY \"user\" ORDER BY n DESC"))

    def done_since(self, since) -> dict[str, int]:
        """Labels, masks and skips per user since a moment (a board's "yours today"), once
        per revision."""
        rows = self.index.per_revision(("done_since", since), lambda: self._rows(
            "SELECT \"user\", count(*) FROM events WHERE action IN ('label', 'mask', 'skip') "
            "AND NOT undone AND \"at\" >= ? GROUP BY \"user\"", [since]))
        return {user: int(n) for user, n in rows}

    def events(self, limit: int = 100) -> pd.DataFrame:
        return self._cursor().execute(
            "SELECT id, \"at\", \"user\", action, image_id, class_id, detail, undone FROM events "
            "ORDER BY id DESC LIMIT ?", [limit]).df()

    def copy_labels(self, path: Path, fmt: str) -> None:
        """Write every label to CSV or Parquet with DuckDB's own writer."""
        options = ("FORMAT parquet" if fmt == "parquet"
                   else "FORMAT csv, HEADER, TIMESTAMPFORMAT '%Y-%m-%dT%H:%M:%S.%f'")
        target = str(path).replace("'", "''")  # COPY takes no bound parameter for its target
        self._cursor().execute(
            "COPY (SELECT l.image_id, i.path, c.name AS label, l.\"user\", "
            "l.created_at AS timestamp, l.source FROM labels l JOIN images i ON i.id = l.image_id "
            "JOIN classes c ON c.id = l.class_id "
            f"ORDER BY l.image_id) TO '{target}' ({options})")

    def table_rows(self, name: str) -> tuple[list[str], list[tuple]]:
        """(column names, rows as Python values) of one table, for the JSON dump."""
        if name not in SESSION_TABLES:
            raise StoreError(f"Unknown table {name!r}.")
        columns = "* EXCLUDE (prev_png)" if name == "events" else "*"
        cur = self._cursor().execute(f"SELECT {columns} FROM {name} ORDER BY ALL")
        return [d[0] for d in cur.description], cur.fetchall()

    def image_ids_by_path(self) -> dict[str, tuple[int, bool]]:
        """path -> (id, readable) of every registered image."""
        rows = self._rows("SELECT path, id, readable FROM images")
        return {path: (image_id, readable) for path, image_id, readable in rows}

