"""strongSwan IKEv2/MOBIKE endpoints inside lab nodes.

- ``charon``: :class:`~testbed.vpn.charon.Charon`, one ``charon-systemd`` per namespace with
  its own rendered ``strongswan.conf`` (templates/strongswan.conf.j2), vici socket and log;
  kernel-libipsec (userspace ESP) where the kernel has no ESP, kernel XFRM where it has.
- the vici client (load secrets/pools/conns/certs, initiate, terminate, list SAs) is
  ``mipbase.vici_client``: the mobile node's agent uses it too.
- ``events``: vici events (and per-message IKE events from charon's log stream) as the
  testbed's structured events, from a listener thread on a second vici session.
- ``profiles``: the gateway (TIA pool, MOBIKE, DPD, intranet selector) and mobile-client
  connection dicts, PSK or certificate authentication; ``pki``: a per-run CA (openssl CLI).
- ``node``: a node's charon + session + listener together, and re-addressing after a move.

The ICMP prober that times a tunnel's recovery runs in a node: ``testbed.programs.pinger``.
"""
