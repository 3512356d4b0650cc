"""Userspace L2 delay relay: netem's delay and jitter for kernels that have no netem.

One process serves many interface pairs. For each pair it opens an AF_PACKET socket on both
interfaces and copies every frame that arrives on one to the other, after a per-direction
delay drawn from ``delay_ms`` plus a jitter sample. It runs inside the switch namespace::

    node eth0 <-veth-> X  ~~relay~~  Y <-veth-> Y' (enslaved to the bridge)

Usage::

    python -m testbed.programs.relay --config FILE.json --control /path/ctl.sock
    python -m testbed.programs.relay --config-json '{"pairs": [...]}' --control /path/ctl.sock

Config. Optional top-level keys: ``seed`` (without it each run draws fresh jitter);
``spin_us`` (default 150): how long before a release the loop stops sleeping and busy-polls,
since a timed sleep wakes ~50 us late (p99 some 100 us) on the VM; ``spin_budget_pct``
(default 5): the most of one CPU spent spinning, beyond which releases just sleep until due::

    {"seed": 1, "spin_us": 150, "spin_budget_pct": 5,
     "pairs": [{"name": "mn-home", "a": "ifA", "b": "ifB",
                "a_to_b": {"delay_ms": 10, "jitter_ms": 1},
                "b_to_a": {"delay_ms": 10}}]}

Per-direction parameters (all optional, unknown keys are rejected):

    delay_ms      mean delay, >= 0 (default 0)
    jitter_ms     >= 0 (default 0): stddev for "normal", half-width for "uniform"
    distribution  "normal" (default) or "uniform"; the total delay is truncated at 0
    reorder       false (default): a frame never overtakes an earlier frame of its direction
                  (release = max(previous release, arrival + sample), as netem with rate);
                  true: each frame is released at its own sample, so jitter reorders
    loss_pct      0..100 (default 0): random loss in the relay (the testbed normally does
                  loss in netfilter; this is for stand-alone use)
    limit         queued frames per direction before tail drop (default 10000)

A direction with zero delay and zero jitter forwards each frame at once (no timer), unless
earlier frames of that direction are still queued (they would be overtaken).

Control socket: a UNIX *stream* socket at ``--control``, newline-delimited JSON, one reply
line per request line, any number of requests per connection. It appears (atomically, by
rename) only after every pair is bound, so "the socket answers ping" means "ready".
Commands::

    {"cmd": "ping"}                          -> {"ok": true, "pid": .., "pairs": N, ...}
    {"cmd": "stats"} / {"cmd": "stats", "pair": NAME}
                                             -> {"ok": true, "pairs": {NAME: {...}}}
    {"cmd": "set", "pair": NAME, "a_to_b": {...}, "b_to_a": {...}, "both": {...}}
        merges the given keys into the direction's current parameters (keys not given stay);
        affects frames arriving from now on          -> {"ok": true, "pair": {...params}}
    {"cmd": "add", "pair": {<pair config>}}  -> open a new pair at run time
    {"cmd": "remove", "pair": NAME}          -> close a pair (its queued frames are dropped)
    {"cmd": "flush", "pair": NAME}           -> drop every frame of the pair in flight: those
        in its delay lines and those its sockets hold unread, both directions (counted as
        drops "flushed"); frames arriving from now on no longer wait behind them
                                             -> {"ok": true, "flushed": {"a_to_b": N, ...}}
    {"cmd": "shutdown"}                      -> reply, then exit as on SIGTERM

Errors are ``{"ok": false, "error": "..."}``; a malformed request never stops the relay.
``relay_command(path, request)`` and ``wait_ready(path)`` in ``control`` are client helpers.

Stats per direction: rx_frames/rx_bytes (arrived), tx_frames/tx_bytes (sent on), dropped and
drops{loss, overflow, tx_error, truncated, disabled, flushed}, queue_frames/queue_bytes (in the
delay line now), max_frame_bytes (> 1514 proves GSO frames pass), late_us_mean/late_us_max (how far
past its release time a delayed frame was sent: the relay's own timing error), params. Byte
counts are Ethernet frame lengths without the 10-byte virtio_net_hdr; a GSO frame counts once.

Interfaces that go down stay bound (the kernel re-attaches the socket on link up); an
interface that disappears disables its pair (logged, shown in stats), the rest keep running.

Set-up notes: disable IPv6 on X, Y and Y' (or in the whole switch namespace), else the
switch namespace's own stack sends router solicitations/MLD out of them; give X and Y the
MTU of the node's link (a non-GSO frame larger than the outgoing MTU is dropped, counted as
tx_error); put tbf/htb on X or Y as usual (the relay's sends go through the qdisc).

Start-up (measured, 20 pairs, Popen of ``ip netns exec`` to first answered ping): ~26 ms, of
which ~3 ms is ``ip netns exec``, ~8-18 ms the interpreter (the project venv's site-packages
cost ~10 ms; ``python -S -m testbed.programs.relay`` run from the repository root skips
them) and ~7 ms compiling these files, because PYTHONDONTWRITEBYTECODE=1 is set here:
``python -m compileall testbed`` once makes that a .pyc load. Binding 20 pairs takes ~1.6
ms. The imports are C-level stdlib modules only: json/socket/signal/random/typing would add
~12 ms (enum, re, hashlib).

Modules: ``datapath`` (the pairs, the delay lines, the event loop; the direction parameters
and their checks), ``control`` (the control socket, the JSON it speaks without the json
package, the client helpers), ``__main__`` (the command line and start-up). This package's
``__init__`` imports nothing: ``python -m`` loads it before ``__main__``.
"""
