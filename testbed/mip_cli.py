"""``testbed mip decode|encode``: Mobile IPv4 messages <-> JSON, for debugging and teaching.

    testbed mip decode 0100070801...            # UDP-434 payload or ICMP type 9/10 message
    testbed mip decode --key 00112233... --spi 256 HEX   # also checks authenticators
    testbed mip encode msg.json                 # JSON (file or stdin) -> hex
    testbed mip decode $(testbed mip encode msg.json)

``decode`` picks UDP-434 (first byte 1, 3, 4) or ICMP (9, 10) by the first byte unless
``--icmp``/``--udp`` says. Malformed input: exit status 2 and a one-line reason on stderr.
``encode`` computes authenticators left out (``"authenticator": null``) from ``--key``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agents.mip.auth import ALGORITHMS, SecurityAssociation
from agents.mip.codec import decode, encode
from agents.mip.errors import MalformedMessage
from agents.mip.extensions import AuthExtension
from agents.mip.jsonview import from_dict, to_dict

__all__ = ["cmd_decode", "cmd_encode", "register"]

EXIT_MALFORMED = 2


def _fail(msg: str) -> int:
    print(f"testbed mip: {msg}", file=sys.stderr)
    return EXIT_MALFORMED


def _parse_hex(text: str) -> bytes:
    cleaned = "".join(text.split()).replace(":", "").replace("-", "")
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError(f"not hex: {text[:40]!r}") from None


def _verify(msg: Any, data: bytes, view: dict[str, Any], key: bytes, spi: int | None, alg: str):
    """Add ``verified`` to the JSON view of each authentication extension the key applies to.

    Computed directly (not through :class:`SecurityAssociation`) so captures that use
    reserved SPIs can still be checked.
    """
    fn = ALGORITHMS[alg]
    for ext, d in zip(getattr(msg, "extensions", []), view.get("extensions", []), strict=False):
        if not isinstance(ext, AuthExtension) or ext.authenticator is None:
            continue
        if spi is not None and ext.spi != spi:
            continue
        d["verified"] = fn(key, data[: ext.offset + 6]) == ext.authenticator


def cmd_decode(args: argparse.Namespace) -> int:
    text = " ".join(args.hex) if args.hex else ""
    if not text or text == "-":
        text = sys.stdin.read()
    try:
        data = _parse_hex(text)
        key = _parse_hex(args.key) if args.key else None
    except ValueError as exc:
        return _fail(str(exc))
    icmp = True if args.icmp else (False if args.udp else None)
    try:
        msg = decode(data, icmp=icmp)
    except MalformedMessage as exc:
        return _fail(f"malformed: {exc}")
    view = to_dict(msg)
    view["length"] = len(data)
    if key is not None:
        _verify(msg, data, view, key, args.spi, args.algorithm)
    print(json.dumps(view, indent=None if args.compact else 2))
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    try:
        if args.file and args.file != "-":
            with open(args.file, encoding="utf-8") as f:
                text = f.read()
        else:
            text = sys.stdin.read()
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc.strerror}")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return _fail(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    try:
        msg = from_dict(obj)
        sas: dict[int, SecurityAssociation] = {}
        if args.key:
            key = _parse_hex(args.key)
            for ext in getattr(msg, "extensions", []):
                if isinstance(ext, AuthExtension) and (args.spi is None or ext.spi == args.spi):
                    sas[ext.spi] = SecurityAssociation(ext.spi, key, args.algorithm)
        data = encode(msg, sas)
    except ValueError as exc:
        return _fail(str(exc))
    print(data.hex())
    return 0


def _add_key_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", metavar="HEX", help="shared key of the security association")
    p.add_argument("--spi", type=int, metavar="N", help="only extensions with this SPI")
    p.add_argument(
        "--algorithm",
        choices=sorted(ALGORITHMS),
        default="hmac-md5",
        help="authenticator algorithm (default hmac-md5, RFC 5944 section 3.5.1)",
    )


def register(subparsers: Any) -> None:
    """Add ``mip decode`` and ``mip encode`` to a ``testbed`` subparsers object."""
    mip = subparsers.add_parser("mip", help="decode/encode Mobile IPv4 messages (JSON <-> hex)")
    sub = mip.add_subparsers(dest="mip_command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "decode",
        help="hex (UDP-434 payload or ICMP 9/10 message) -> JSON",
        description="Decode a Mobile IPv4 message. Exit status 2 on malformed input.",
    )
    p.add_argument("hex", nargs="*", help="the message in hex (default or '-': stdin)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--icmp", action="store_true", help="an ICMP message (type 9/10)")
    kind.add_argument("--udp", action="store_true", help="a UDP-434 payload")
    p.add_argument("--compact", action="store_true", help="JSON on one line")
    _add_key_options(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser(
        "encode",
        help="JSON (as printed by decode) -> hex",
        description="Encode a Mobile IPv4 message from JSON; null authenticators are "
        "computed with --key.",
    )
    p.add_argument("file", nargs="?", help="JSON file (default or '-': stdin)")
    _add_key_options(p)
    p.set_defaults(func=cmd_encode)
