"""``python -m testbed.programs.relay``: the relay's command line and start-up."""

from __future__ import annotations

import _signal
import gc
import os
import sys
import time

from testbed.programs.relay.control import Control, json_loads
from testbed.programs.relay.datapath import (
    DEFAULT_SPIN_BUDGET_PCT,
    DEFAULT_SPIN_US,
    EPOLLIN,
    ConfigError,
    Relay,
    check_number,
    log,
)

# typing costs ~8 ms of imports (it pulls in re and more); annotations are not
# evaluated at run time here (PEP 563), so the names are only needed by type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


USAGE = """usage: python -m testbed.programs.relay (--config FILE.json | --config-json TEXT)
           --control PATH

Userspace L2 delay relay; run it inside the namespace that holds the interfaces.
See the package docstring (python -c 'import testbed.programs.relay as r; help(r)') for the
config and the control protocol."""


def _parse_args(argv: list[str]) -> dict[str, str]:
    # argparse costs ~5 ms of imports; three options do not need it.
    opts: dict[str, str] = {}
    it = iter(argv)
    for arg in it:
        if arg in ("-h", "--help"):
            print(USAGE)
            raise SystemExit(0)
        key, eq, val = arg.partition("=")
        if key not in ("--config", "--config-json", "--control"):
            raise ConfigError(f"unknown argument {arg!r}")
        if not eq:
            val = next(it, "")
        if not val:
            raise ConfigError(f"{key} needs a value")
        opts[key] = val
    if ("--config" in opts) == ("--config-json" in opts):
        raise ConfigError("give exactly one of --config FILE or --config-json TEXT")
    if "--control" not in opts:
        raise ConfigError("--control PATH is required")
    return opts


def _load_config(opts: dict[str, str]) -> dict[str, Any]:
    if "--config" in opts:
        with open(opts["--config"], "rb") as f:
            text = f.read()
    else:
        text = opts["--config-json"].encode()
    try:
        cfg = json_loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"config is not valid JSON: {e}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("pairs"), list):
        raise ConfigError('config must be an object with a "pairs" list')
    unknown = set(cfg) - {"pairs", "seed", "spin_us", "spin_budget_pct"}
    if unknown:
        raise ConfigError(f"config has unknown key(s) {sorted(unknown)}")
    seed = cfg.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    cfg.setdefault("spin_us", DEFAULT_SPIN_US)
    cfg.setdefault("spin_budget_pct", DEFAULT_SPIN_BUDGET_PCT)
    check_number(cfg, "spin_us", 0, 10_000)
    check_number(cfg, "spin_budget_pct", 0, 100)
    return cfg


def _lower_timer_slack() -> None:
    # The kernel may defer a timed wakeup by the task's timer slack (50 us by default);
    # 1 us keeps select()'s wakeups close to the frame's release time. Root only; harmless
    # to skip.
    try:
        with open(f"/proc/{os.getpid()}/timerslack_ns", "w") as f:
            f.write("1000")
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    t0 = time.monotonic()
    try:
        opts = _parse_args(sys.argv[1:] if argv is None else argv)
        cfg = _load_config(opts)
    except (ConfigError, OSError) as e:
        sys.stderr.write(f"relay: {e}\n{USAGE}\n")
        return 2
    relay = Relay(cfg.get("seed"), cfg["spin_us"], cfg["spin_budget_pct"])
    control = Control(relay)
    try:
        for pc in cfg["pairs"]:
            relay.add_pair(pc)
        _lower_timer_slack()
        # A signal only sets a flag; the wakeup fd makes the blocked select() return at once.
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        relay.handlers[rfd] = lambda _mask: os.read(rfd, 512) and None
        relay.ep.register(rfd, EPOLLIN)
        _signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)

        def on_signal(signum: int, _frame: Any) -> None:
            relay.stop = True

        _signal.signal(_signal.SIGTERM, on_signal)
        _signal.signal(_signal.SIGINT, on_signal)
        control.open(opts["--control"])
    except (ConfigError, OSError) as e:
        log(f"start-up failed: {e}")
        control.close()
        relay.close()
        return 2
    log(
        f"ready: {len(relay.pairs)} pair(s), control {opts['--control']}, "
        f"{(time.monotonic() - t0) * 1000:.1f} ms after main()"
    )
    # Start-up objects (module code, config) go to the permanent generation: a full collection
    # then only scans what the data path allocates (measured: a 0.6 ms pause otherwise).
    gc.freeze()
    try:
        relay.run()
    finally:
        control.close()
        relay.close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
