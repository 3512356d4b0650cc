"""Programs that run inside a lab's nodes, each started as ``python -m testbed.programs.X``
in a node's network namespace (the command lines: ``testbed.launch``).

- ``probe``: the UDP probe streams (sequence numbers and send times; one file per stream);
- ``tcpprobe``: a TCP transfer across the moves (bytes, stalls, errors as events);
- ``pinger``: ICMP echoes with CLOCK_MONOTONIC send and receive times;
- ``relay``: the userspace delay relay in the switch namespace (netem's delay and jitter for
  kernels without netem), with its data path, control socket and command line.

The agents' own entry points (``agents.runtime.main``, ``agents.dhcp.watch``) are started
the same way but belong to the agents. This package imports nothing of its own at start-up:
the relay's start-up time is measured (``benchmarks/bench_relay.py``).
"""
