"""SIGTERM (what Docker and Spaces send) and SIGINT (Ctrl-C) both mean "stop gracefully".

While the app starts, a signal raises Stop in the main thread (a KeyboardInterrupt, so code
that cleans up after Ctrl-C cleans up after it too); once it serves, a signal only wakes the
main thread, which then closes everything in order (hitl/app_build.py: App.close). A second
signal while stopping quits at once: DuckDB's write-ahead log keeps every committed label.
A SIGINT that the shell told this process to ignore (`cmd &` in a script) stays ignored.
"""
from __future__ import annotations

import os
import signal
import sys
import threading


class Stop(KeyboardInterrupt):
    """A stop signal arrived while the app was starting."""


class Stopper:
    """Turns SIGTERM and SIGINT into one graceful stop; install() from the main thread."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.serving = False
        self.stopping = False

    def install(self) -> Stopper:
        signal.signal(signal.SIGTERM, self._handle)
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.stopping:
            print("hitl: stopped at once (a second signal)", file=sys.stderr, flush=True)
            os._exit(1)
        self.requested.set()
        if not self.serving:
            self.stopping = True
            raise Stop

    def wait(self) -> None:
        """Serve until a stop signal; then stop taking signals as interruptions."""
        self.serving = True
        while not self.requested.wait(0.5):  # a timeout: the handler runs between waits
            pass
        self.stopping = True
