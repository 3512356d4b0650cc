"""``testbed mip decode|encode`` through a small argparse harness."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from agents.mip.auth import SecurityAssociation
from agents.mip.codec import encode
from agents.mip.extensions import AuthExtension, NaiExtension, UdpTunnelRequest
from agents.mip.icmp import AgentAdvertisement, AgentSolicitation, MobilityAgentExtension
from agents.mip.messages import RegistrationRequest
from testbed import mip_cli

KEY = "000102030405060708090a0b0c0d0e0f"
SA = SecurityAssociation(256, bytes.fromhex(KEY))
REQ = encode(
    RegistrationRequest(
        "10.1.0.7",
        "10.1.0.1",
        "10.2.0.1",
        0xE8A1B2C301020304,
        1800,
        0x02,
        [NaiExtension("mn@lab"), UdpTunnelRequest(force=True), AuthExtension(32, 256)],
    ),
    {256: SA},
)


def run(
    argv: list[str], capsys, stdin: str | None = None, monkeypatch=None
) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="testbed")
    mip_cli.register(parser.add_subparsers(dest="command", required=True))
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_decode_request_with_verification(capsys) -> None:
    code, out, err = run(["mip", "decode", "--key", KEY, "--spi", "256", REQ.hex()], capsys)
    assert code == 0 and err == ""
    d = json.loads(out)
    assert d["message"] == "registration_request"
    assert d["flags"] == ["T"] and d["lifetime"] == 1800
    assert d["identification"] == 0xE8A1B2C301020304
    assert d["identification_time"] == "2023-09-05T13:59:31.003937Z"
    assert [e["name"] for e in d["extensions"]] == ["nai", "udp_tunnel_request", "mn_ha_auth"]
    assert d["extensions"][1]["force"] is True
    assert d["extensions"][2]["verified"] is True


def test_decode_wrong_key_and_spi_filter(capsys) -> None:
    code, out, _ = run(["mip", "decode", "--key", "00" * 16, REQ.hex()], capsys)
    assert code == 0 and json.loads(out)["extensions"][2]["verified"] is False
    code, out, _ = run(["mip", "decode", "--key", KEY, "--spi", "999", REQ.hex()], capsys)
    assert "verified" not in json.loads(out)["extensions"][2]
    code, out, _ = run(
        ["mip", "decode", "--key", KEY, "--algorithm", "keyed-md5", REQ.hex()], capsys
    )
    assert json.loads(out)["extensions"][2]["verified"] is False


def test_decode_accepts_spaced_hex_and_stdin(capsys, monkeypatch) -> None:
    spaced = " ".join(REQ.hex()[i : i + 2] for i in range(0, len(REQ.hex()), 2))
    code, out, _ = run(["mip", "decode", "--compact", spaced], capsys)
    assert code == 0 and out.count("\n") == 1
    code, out, _ = run(["mip", "decode"], capsys, stdin=REQ.hex() + "\n", monkeypatch=monkeypatch)
    assert code == 0 and json.loads(out)["home_address"] == "10.1.0.7"


def test_decode_icmp_by_first_byte_and_option(capsys) -> None:
    adv = encode(
        AgentAdvertisement(
            30, [("10.2.0.1", 0)], MobilityAgentExtension(1, 600, 0x1000, ["10.2.0.1"]), [24]
        )
    )
    code, out, _ = run(["mip", "decode", adv.hex()], capsys)
    d = json.loads(out)
    assert code == 0 and d["message"] == "agent_advertisement"
    assert d["mobility_agent"]["flags"] == ["F"]
    code, out, _ = run(["mip", "decode", "--icmp", encode(AgentSolicitation()).hex()], capsys)
    assert json.loads(out) == {"message": "agent_solicitation", "icmp_type": 10, "length": 8}
    # Forcing UDP on an ICMP message: type 10 is not a Mobile IP message type.
    code, _, err = run(["mip", "decode", "--udp", adv.hex()], capsys)
    assert code == 2 and "unknown Mobile IP message type 9" in err


@pytest.mark.parametrize(
    ("arg", "needle"),
    [
        (REQ[:-3].hex(), "runs past the end"),
        ((REQ + b"\x01").hex(), "truncated before its length byte"),
        ("zz", "not hex"),
        ("", "empty message"),
    ],
)
def test_decode_malformed_exits_2_with_one_line(capsys, monkeypatch, arg: str, needle: str) -> None:
    argv = ["mip", "decode", arg] if arg else ["mip", "decode"]
    code, out, err = run(argv, capsys, stdin="" if not arg else None, monkeypatch=monkeypatch)
    assert code == 2 and out == ""
    assert needle in err and err.count("\n") == 1


def test_encode_round_trip(capsys, tmp_path) -> None:
    code, out, _ = run(["mip", "decode", REQ.hex()], capsys)
    d = json.loads(out)
    d["extensions"][2]["authenticator"] = None  # recompute from the key
    path = tmp_path / "rrq.json"
    path.write_text(json.dumps(d))
    code, out, err = run(["mip", "encode", "--key", KEY, str(path)], capsys)
    assert code == 0, err
    assert out.strip() == REQ.hex()


def test_encode_from_stdin_and_errors(capsys, monkeypatch, tmp_path) -> None:
    msg = {
        "message": "registration_reply",
        "code": 0,
        "lifetime": 60,
        "home_address": "10.1.0.7",
        "home_agent": "10.1.0.1",
        "identification": "0x10",
        "extensions": [{"name": "mn_ha_auth", "spi": 256}],
    }
    code, out, _ = run(["mip", "encode", "--key", KEY], capsys, json.dumps(msg), monkeypatch)
    assert code == 0
    code, out, _ = run(["mip", "decode", "--key", KEY, out.strip()], capsys)
    assert json.loads(out)["extensions"][0]["verified"] is True

    bad = dict(msg, home_agent="10.1.0")
    code, out, err = run(["mip", "encode", "--key", KEY], capsys, json.dumps(bad), monkeypatch)
    assert code == 2 and "$.home_agent: not an IPv4 address" in err
    code, _, err = run(["mip", "encode"], capsys, json.dumps(msg), monkeypatch)
    assert code == 2 and "no security association for SPI 256" in err
    code, _, err = run(["mip", "encode"], capsys, "{not json", monkeypatch)
    assert code == 2 and "invalid JSON" in err
    code, _, err = run(["mip", "encode", str(tmp_path / "missing.json")], capsys)
    assert code == 2 and "cannot read" in err
    code, _, err = run(["mip", "encode"], capsys, json.dumps({"message": "nope"}), monkeypatch)
    assert code == 2 and "unknown message kind" in err


def test_registered_as_testbed_subcommand() -> None:
    parser = argparse.ArgumentParser(prog="testbed")
    mip_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["mip", "encode", "x.json", "--spi", "300"])
    assert args.func is mip_cli.cmd_encode and args.spi == 300
