"""Mobile IPv4 protocol core, sans-I/O (RFC 5944, RFC 3024, RFC 3519, RFC 2794, RFC 3012).

Modules, one job each:

* :mod:`.errors` -- :class:`MalformedMessage`, the only exception the decoders raise;
* :mod:`.constants` -- message/extension types, reply codes, flags;
* :mod:`.extensions`, :mod:`.messages`, :mod:`.icmp` -- the wire formats; :mod:`.codec` -- one
  ``decode``/``encode`` for all of them;
* :mod:`.auth` -- security associations, HMAC-MD5 and keyed-MD5 authenticators;
* :mod:`.replay` -- NTP timestamps, the replay window, nonces;
* :mod:`.actions` -- what the state machines ask their drivers to do;
* :mod:`.mn`, :mod:`.ha`, :mod:`.fa` -- the state machines; :mod:`.advert` -- advertising;
* :mod:`.regclient` -- sending registrations: Identification, backoff, reply matching (the
  mobile node's, the MIP proxy's toward the home agent);
* :mod:`.jsonview` -- messages as JSON; :mod:`.pcap`, :mod:`.ipv4` -- captures and packets;
* :mod:`.simnet` -- an in-memory network with a fake clock to run machines together.
"""

from agents.mip.errors import MalformedMessage, UnknownExtension

__all__ = ["MalformedMessage", "UnknownExtension"]
