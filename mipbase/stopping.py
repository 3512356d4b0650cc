"""How a program that runs inside a node is told to stop: SIGTERM (the runner's teardown)
or SIGINT (Ctrl-C) set a flag its loop checks, so it ends on its own path -- files flushed,
its last events written -- instead of dying mid-write."""

from __future__ import annotations

import signal


class StopFlag:
    """False until one of ``signals`` arrives: ``while not stop: ...``."""

    def __init__(self, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)):
        self.requested = False
        for signum in signals:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, _signum: int, _frame: object) -> None:
        self.requested = True

    def __bool__(self) -> bool:
        return self.requested
