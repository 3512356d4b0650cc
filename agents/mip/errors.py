"""The one exception type the Mobile IPv4 decoders raise.

Every decoder in this package (:func:`agents.mip.messages.decode_udp`,
:func:`agents.mip.icmp.decode_icmp`, :func:`agents.mip.messages.decode`) raises
:class:`MalformedMessage` -- and nothing else -- for input it cannot accept, so a receive loop
needs exactly one ``except``. :class:`UnknownExtension` is a subclass for the one case where the
RFC asks for a specific reaction instead of silent discard (a non-skippable extension that is
not understood), and it carries what the receiver needs to build that reaction.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MalformedMessage", "UnknownExtension"]


class MalformedMessage(ValueError):
    """Input that is not a well-formed Mobile IPv4 message.

    ``reason`` is a one-line human description; ``offset`` is the byte offset (from the start of
    the decoded buffer) where the problem was found, or ``None`` when it is not about one place.
    """

    def __init__(self, reason: str, offset: int | None = None) -> None:
        where = "" if offset is None else f" (at byte {offset})"
        super().__init__(reason + where)
        self.reason = reason
        self.offset = offset


class UnknownExtension(MalformedMessage):
    """A non-skippable extension (type 0-127) that this implementation does not understand.

    RFC 5944 section 1.9: extensions 0-127 that are not recognised make the whole message
    unacceptable, while 128-255 are skipped. For a Registration Request the agent answers with
    "poorly formed Request": ``fa_code`` (70) from a foreign agent, ``ha_code`` (134) from a home
    agent; a mobile node silently discards a Reply or an Agent Advertisement that carries one.
    ``message`` is whatever was decoded before the offending extension (for a registration
    message: the message object with the extensions that preceded it), so an agent can address
    its reply; it is ``None`` when nothing usable was decoded.
    """

    fa_code = 70  # RFC 5944 section 3.4: 70 poorly formed Request (FA)
    ha_code = 134  # RFC 5944 section 3.4: 134 poorly formed Request (HA)

    def __init__(self, ext_type: int, offset: int, message: Any = None) -> None:
        super().__init__(f"unknown non-skippable extension type {ext_type}", offset)
        self.ext_type = ext_type
        self.message = message
