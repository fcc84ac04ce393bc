"""A page session speaking Gradio's own browser protocol, for tests that act as a hostile
client: log in, read /config, and run any event by its fn_index through
`/gradio_api/queue/join` + `/gradio_api/queue/data` (what the page's JavaScript does).
"""
from __future__ import annotations

import itertools
import json
import random
import uuid

import httpx


class PageSession:
    """One browser tab: a login cookie and a session hash (Gradio keeps gr.State per hash)."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None, timeout: float = 120):
        self.http = httpx.Client(base_url=url, timeout=timeout)
        if auth is not None:
            answer = self.http.post("login", data={"username": auth[0], "password": auth[1]})
            if answer.status_code != 200:
                raise PermissionError(f"login as {auth[0]} refused: {answer.status_code}")
        self.session_hash = uuid.uuid4().hex[:11]
        self.config = self.http.get("config").json()
        self.components = {c["id"]: c for c in self.config["components"]}

    def close(self) -> None:
        self.http.close()

    @property
    def events(self) -> list[dict]:
        """Every event the server runs (has a Python function), with its fn_index as "id"."""
        return [d for d in self.config["dependencies"] if d.get("backend_fn")]

    def elem_ids(self, event: dict) -> set[str]:
        """The elem_ids of the components whose events trigger `event`."""
        ids = set()
        for target, _ in event["targets"]:
            elem = self.components.get(target, {}).get("props", {}).get("elem_id")
            if elem:
                ids.add(elem)
        return ids

    def event_by_elem(self, elem_id: str, trigger: str) -> dict:
        for event in self.events:
            for target, kind in event["targets"]:
                props = self.components.get(target, {}).get("props", {})
                if props.get("elem_id") == elem_id and kind == trigger:
                    return event
        raise KeyError(f"no {trigger} event on #{elem_id}")

    @property
    def server_functions(self) -> list[tuple[int, str]]:
        """Every (component id, name) a page script can call through /component_server
        (gr.HTML's server_functions): page events too, outside the queue."""
        return [(c["id"], name) for c in self.config["components"]
                for name in c.get("props", {}).get("server_fns") or []]

    def call_server(self, component_id: int, name: str, data) -> dict:
        """Call one server function as the page script does; returns its JSON answer (or the
        HTTP refusal as {"status", "text"})."""
        answer = self.http.post("gradio_api/component_server", json={
            "session_hash": self.session_hash, "component_id": component_id,
            "fn_name": name, "data": data})
        if answer.status_code != 200:
            return {"status": answer.status_code, "text": answer.text}
        return answer.json()

    def call(self, fn_index: int, data: list, trigger_id: int | None = None) -> dict:
        """Run one event; returns Gradio's process_completed message (success, output)."""
        body = {"data": data, "fn_index": fn_index, "session_hash": self.session_hash,
                "trigger_id": trigger_id, "event_data": None}
        joined = self.http.post("gradio_api/queue/join", json=body)
        if joined.status_code != 200:
            return {"success": False, "status": joined.status_code, "output": joined.text}
        event_id = joined.json()["event_id"]
        with self.http.stream("GET", "gradio_api/queue/data",
                              params={"session_hash": self.session_hash}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed" and \
                        message.get("event_id") == event_id:
                    return message
        raise AssertionError(f"no result for event {fn_index}")

    # ---- values a hostile client might send ----------------------------------------------
    def candidates(self, component_id: int, words: list) -> list:
        """A few values for one input: its own default and choices, plus `words` (names and
        ids that mean something in this session)."""
        comp = self.components.get(component_id, {})
        kind, props = comp.get("type"), comp.get("props", {})
        if kind == "state":
            return [None]
        if kind in ("textbox", "dropdown", "radio"):
            choices = [c[1] if isinstance(c, list) else c for c in props.get("choices") or []]
            return _unique([*choices[:2], props.get("value"), *words])
        if kind == "checkbox":
            return [True, False]
        if kind in ("number", "slider"):
            return _unique([props.get("value"), 1])
        if kind == "api":
            return _unique([True, *words])
        return [props.get("value")]

    def argument_sets(self, event: dict, words: list, limit: int = 6, seed: int = 0) -> list:
        """Up to `limit` argument lists for `event`: the product of each input's candidates
        when small, else its first rows and a seeded sample."""
        options = [self.candidates(i, words) for i in event["inputs"]]
        every = list(itertools.islice(itertools.product(*options), 4096))
        if len(every) <= limit:
            return [list(row) for row in every]
        rng = random.Random(seed + event["id"])
        return [list(row) for row in every[:2] + rng.sample(every[2:], limit - 2)]


def _unique(values: list) -> list:
    out = []
    for value in values:
        if value not in out:
            out.append(value)
    return out
