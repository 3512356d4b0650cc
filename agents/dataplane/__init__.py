"""Mobile IP data plane: tunnels between home agent, foreign agent and mobile node.

* :mod:`agents.dataplane.packets` -- IP in IP (RFC 2003) and MIP Tunnel Data (RFC 3519
  section 3.3) headers, sans I/O; parsers return drop reasons instead of raising
* :mod:`agents.dataplane.tun` -- TUN devices (ioctls only)
* :mod:`agents.dataplane.tunnels` -- :class:`TunnelEngine`, the userspace data plane (TUN +
  raw IPIP socket + UDP 434), asyncio or selector driven
* :mod:`agents.dataplane.kernel` -- :class:`KernelIpipTunnel` and :func:`select_backend`
* :mod:`agents.dataplane.arp` -- proxy/gratuitous ARP and route plumbing (RFC 5944 4.6),
  through raw rtnetlink (:mod:`mipbase.rtnl`)
* ``python -m agents.dataplane.demo`` -- one engine driven by JSON lines (tests, benchmarks)

pyroute2 is imported lazily (only :mod:`kernel` needs it).
"""

from agents.dataplane.kernel import KernelIpipTunnel, kernel_ipip_available, select_backend
from agents.dataplane.packets import IPIP_MTU, MIP_PORT, UDP_MTU
from agents.dataplane.tun import TunDevice, open_tun
from agents.dataplane.tunnels import COUNTERS, Tunnel, TunnelEngine

__all__ = [
    "COUNTERS",
    "IPIP_MTU",
    "MIP_PORT",
    "UDP_MTU",
    "KernelIpipTunnel",
    "TunDevice",
    "Tunnel",
    "TunnelEngine",
    "kernel_ipip_available",
    "open_tun",
    "select_backend",
]
