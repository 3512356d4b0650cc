"""The programs inside nodes stop on their own path when told to (SIGTERM, Ctrl-C)."""

from __future__ import annotations

import os
import signal

from mipbase.stopping import StopFlag


def test_the_flag_is_set_by_its_signal_only() -> None:
    previous = signal.getsignal(signal.SIGUSR2)
    try:
        stop = StopFlag((signal.SIGUSR2,))
        assert not stop
        os.kill(os.getpid(), signal.SIGUSR2)
        assert stop and stop.requested
    finally:
        signal.signal(signal.SIGUSR2, previous)
