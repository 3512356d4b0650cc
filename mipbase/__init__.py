"""What the agents and the testbed both stand on; it imports neither of them.

* :mod:`mipbase.events` -- structured event files (JSON lines, CLOCK_MONOTONIC ns)
* :mod:`mipbase.specfile` -- YAML spec files into models, errors at ``file:line: field``
* :mod:`mipbase.clock` -- ``TESTBED_TIME_SCALE`` for fixed waits; a node's (skewable) wall clock
* :mod:`mipbase.rtnl` -- raw rtnetlink requests in batches (the handoff path, moving links)
* :mod:`mipbase.linkwatch` -- carrier changes straight from rtnetlink (L2 triggers)
* :mod:`mipbase.vici_client` -- sessions on a charon's vici socket and helpers over ``vici``
* :mod:`mipbase.modes` -- the mobile node's attachment modes (``home``, ``f``, ``c``, ``mc``...)
* :mod:`mipbase.stopping` -- SIGTERM/SIGINT as a flag the programs inside nodes loop on

The layers (``tests/unit/test_import_layers.py``): ``agents`` import ``mipbase`` and
themselves; ``testbed`` imports ``mipbase`` and reaches the agents as processes, through
their configuration models and the Mobile IP wire format.
"""
