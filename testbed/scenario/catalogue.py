"""Every event name the agents, services and the runner write, with what it means.

A scenario's ``wait`` steps and its ``handoff[N].phases_ms.X`` expectations are checked
against this catalogue before anything is built: a misspelt name is an error at the
scenario's line, not a wait that times out or a phase that is never there.
``tests/unit/test_event_catalogue.py`` reads the code for the names it emits and fails when
one is missing here.

Every event is one JSON line ``{"t_ns", "node", "event", ...}`` (``events.jsonl`` of a run);
``node`` is where it happened (``runner`` for the runner, ``mn.x`` for a dual-MIP MN's
external registration).
"""

from __future__ import annotations

import difflib

from testbed.summary import handoff_fields

# -- events, by who writes them --------------------------------------------------------

RUNNER_EVENTS: dict[str, str] = {
    "run_start": "a repetition begins",
    "lab_up": "the lab is built (impairments: the data path taken)",
    "service_started": "a scenario service was started (target: its node)",
    "services_ready": "every agent said it is up; probes start next",
    "probes_started": "the probe streams start (start_ns)",
    "timeline_start": "the timeline's clock starts",
    "step": "a timeline step begins (index, action, text)",
    "move_start": "a move step detaches the node (index, target, from, to, gap_ms)",
    "link_down": "carrier off: a move or link step (runner), or the MN's core saw it",
    "link_up": "carrier on: a move or link step (runner), or the MN's core saw it",
    "impairment_changed": "an impair step took effect (egress, ingress)",
    "nat_flush": "a nat step forgot the NAT's mappings",
    "nat_rebind": "a nat step moved the NAT to new external ports",
    "service_stop": "a process step stopped a service",
    "service_start": "a process step started a service",
    "service_kill": "a process step killed a service (SIGKILL)",
    "service_restart": "a process step restarted a service",
    "wait_done": "a wait step saw its event (awaited, waited_ms)",
    "wait_timeout": "a wait step's event did not come in time (a failed expectation)",
    "pause": "the run paused for the interactive shell",
    "pause_skipped": "a pause step outside --cli",
    "resume": "the shell was left; the run goes on",
    "note": "a note step (text)",
    "run_error": "the repetition stopped on an error (error)",
    "run_interrupted": "the repetition was interrupted (Ctrl-C, SIGTERM)",
    "run_end": "the repetition's lab is being removed",
}

AGENT_EVENTS: dict[str, str] = {
    # every agent (agents/runtime)
    "agent_started": "an agent is up (role, config): the runner's ready signal for HA, FA, proxy",
    "agent_stopped": "an agent stopped (counters)",
    "agent_error": "an error in an agent's loop or worker thread (counts as a run's agent error)",
    "send_failed": "a message could not be sent (dst, error)",
    "icmp_error": "an ICMP error arrived for a message the agent sent (type, code, reporter)",
    "message_dropped": "a message was ignored (reason, src)",
    "events_suppressed": "repeated events of one kind in an interval, counted not written "
    "(of, count, suppressed, sources)",
    "event_file_full": "the event file reached its size cap: nothing more is written to it",
    "dataplane_applied": "a message's data-plane work is done (its time in ms)",
    "dataplane_error": "a data-plane action failed",
    "dataplane_home": "the MN's routes are back on the home link (after its gratuitous ARP)",
    "tunnel_up": "a Mobile IP tunnel was set up (peer, role, udp)",
    "tunnel_down": "a Mobile IP tunnel was taken down",
    "tunnel_mtu": "an IP-in-IP tunnel entry learned a path MTU",
    "tunnel_peer_learned": "a UDP tunnel's peer port changed (NAT rebinding)",
    "tun_mtu": "the MN's TUN MTU was set (mode mc: the VPN's less the tunnel header)",
    "tun_mtu_failed": "the MN's TUN MTU could not be set",
    "udp_message_handler_failed": "an RFC 3519 tunnel message handler raised",
    # mobile node (agents/mip/mn.py, agents/runtime)
    "mn_started": "the MN's protocol core started",
    "carrier_down": "the MN's (or a DHCP watcher's) interface lost carrier",
    "carrier_up": "the MN's (or a DHCP watcher's) interface has carrier again",
    "arp_request_sent": "the kernel asked the MN to resolve an address and it broadcast the "
    "ARP request: home, or on its lease's subnet (target, sender)",
    "arp_withheld": "the kernel asked the MN to resolve an address and it did not broadcast: "
    "away from home (RFC 5944 4.6), or a carrier change not yet read of (target, reason)",
    "movement_detected": "the MN decided it may have moved (trigger)",
    "agent_solicitation_sent": "the MN solicited agents (count)",
    "agent_discovered": "the MN heard a new agent's advertisement",
    "agent_lost": "the MN's agent's advertisement lifetime ran out",
    "agent_rebooted": "the MN's FA rebooted (sequence number below 256)",
    "address_acquired": "the MN got a co-located address (DHCP)",
    "address_lost": "the MN's co-located address went",
    "registration_sent": "the MN sent a registration request (to, mode)",
    "registration_retransmitted": "the MN retransmitted a registration request",
    "registration_accepted": "the MN's registration was accepted (mode, from, udp)",
    "registration_denied": "a registration was denied (at the MN, FA or HA; code)",
    "registration_resync": "the MN resynchronised its identification after a 133",
    "registration_failed": "the MN gave up a registration",
    "registration_expired": "the MN's binding ran out",
    "deregistration_sent": "the MN sent a deregistration (lifetime 0)",
    "deregistered": "the MN's deregistration was accepted",
    "returned_home": "the MN is at home (mode home)",
    "home_agent_changed": "the MN took the home agent a reply named",
    "keepalive_sent": "the MN sent an RFC 3519 keepalive",
    "shutdown": "the MN's core is shutting down (deregisters)",
    # mobile node, VPN and boundary (agents/mip/boundary.py, agents/runtime/vpn.py)
    "boundary_probe": "the MN tried both ways at once (direct registration and the gateway)",
    "boundary_decision": "the MN decided inside or outside (inside, reason)",
    "home_agent_probe": "the MN's probe of the home agent was answered or not",
    "home_agent_unreachable": "an ICMP unreachable for the direct registration: outside at once",
    "tia_changed": "outside, the VPN gave a new tunnel inner address",
    "vpn_gateway_changed": "outside, a network another VPN gateway serves: a new IKE SA with "
    "it, then its TIA registered (gateway, ike: the MN's charon connection)",
    "vpn_path_dead": "outside, echoes through the tunnel went unanswered: a new IKE SA",
    "vpn_tunnel_lost": "outside, the IPsec tunnel went without a move: it is brought back",
    "vpn_initiate_failed": "bringing up the IPsec tunnel failed",
    "vpn_retry": "the IPsec tunnel's initiation is retried (attempt, delay_ms, error)",
    "vpn_terminate_failed": "closing the IPsec tunnel failed",
    "external_registration": "dual MIP: the registration with the external HA was accepted",
    # home agent (agents/mip/ha.py)
    "registration_received": "a registration request arrived at the HA, before its work "
    "(src, home_address, care_of, identification, lifetime)",
    "registration_reply_sent": "the HA sent a registration reply (to, code, identification; "
    "not a rate-limited denial)",
    "binding_added": "the HA accepted a first registration (a new binding)",
    "binding_updated": "the HA accepted a registration from a new care-of address",
    "binding_renewed": "the HA accepted a renewal from the same care-of address",
    "binding_removed": "the HA removed a binding (reason deregistered/replaced)",
    "binding_expired": "a binding's lifetime ran out at the HA",
    "nat_detected": "the HA saw a NAT between it and the MN (RFC 3519)",
    # foreign agent (agents/mip/fa.py)
    "request_relayed": "the FA relayed a registration request to the HA",
    "reply_relayed": "the FA relayed a registration reply to the MN",
    "request_superseded": "the FA dropped a pending request for a newer one",
    "pending_limit": "the FA refused a request: too many pending for its home address (66)",
    "request_evicted": "the FA dropped its oldest pending request for a new one (max_pending)",
    "visitor_added": "the FA added a visitor",
    "visitor_updated": "the FA updated a visitor",
    "visitor_removed": "the FA removed a visitor (deregistered)",
    "visitor_expired": "a visitor's lifetime ran out at the FA",
    # MIP proxy (agents/mip/proxy.py)
    "proxy_started": "the MIP proxy's core started",
    "proxy_upstream_sent": "the proxy registered with the real HA",
    "proxy_upstream_accepted": "the real HA accepted the proxy's registration",
    "proxy_upstream_denied": "the real HA denied the proxy's registration",
    "proxy_upstream_timeout": "the real HA did not answer the proxy",
    "proxy_upstream_resync": "the proxy resynchronised with the real HA",
    "proxy_upstream_deregistered": "the proxy deregistered from the real HA",
    "proxy_upstream_expired": "the proxy's upstream binding ran out",
    "proxy_reply_held": "the proxy holds the MN's reply until the real HA accepts",
    "proxy_reply_released": "the proxy released a held reply",
    "proxy_reply_denied": "the proxy denied the MN (the real HA refused)",
    "proxy_reply_discarded": "the proxy discarded a held reply",
}

DHCP_EVENTS: dict[str, str] = {
    "dhcp_watch_started": "the dhcp-client service started (carrier)",
    "dhcp_watch_stopped": "the dhcp-client service stopped",
    "dhcp_discover_sent": "DHCPDISCOVER sent",
    "dhcp_offer": "DHCPOFFER received",
    "dhcp_request_sent": "DHCPREQUEST sent",
    "dhcp_ack": "DHCPACK received",
    "dhcp_nak": "DHCPNAK received",
    "dhcp_bound": "the address is configured on the interface",
    "dhcp_unbound": "the address was removed (reason)",
    "dhcp_release_sent": "DHCPRELEASE sent",
    "dhcp_renewing": "renewing the lease (T1)",
    "dhcp_rebinding": "rebinding the lease (T2)",
    "dhcp_request_timeout": "no answer to a request: start again",
    "dhcp_link_down": "the DHCP client saw the link go down",
    "dhcp_stopped": "the DHCP client stopped acquiring (the MN is home)",
    "dhcp_ignored": "a DHCP message was ignored (reason)",
    "dhcp_configure_failed": "the address could not be configured",
    "dhcp_send_failed": "a DHCP message could not be sent",
    "dhcp_socket_error": "the DHCP socket failed",
    "lease_expired": "the lease ran out",
}

VPN_EVENTS: dict[str, str] = {
    "ike_message": "an IKE message sent or received (exchange, dir)",
    "ike_updown": "an IKE SA came up or went down (up)",
    "ike_update": "MOBIKE moved an IKE SA to new addresses",
    "ike_rekey": "an IKE SA was rekeyed",
    "child_updown": "a CHILD_SA came up or went down (up)",
    "child_rekey": "a CHILD_SA was rekeyed",
}

PROBE_EVENTS: dict[str, str] = {
    "tcp_connected": "the TCP probe connected (role)",
    "tcp_error": "the TCP probe's connection failed (role, error)",
    "tcp_closed": "the TCP probe's peer closed the connection",
    "tcp_stopped": "the TCP probe stopped (bytes)",
}

EVENTS: dict[str, str] = {
    **RUNNER_EVENTS,
    **AGENT_EVENTS,
    **DHCP_EVENTS,
    **VPN_EVENTS,
    **PROBE_EVENTS,
}

# -- phases of a handoff -----------------------------------------------------------------

# event name -> the phase it marks (an event may also carry "phase": NAME itself)
PHASE_EVENTS: dict[str, str] = {
    "link_down": "link_down",
    "link_up": "link_up",
    "carrier_down": "carrier_down",
    "carrier_up": "carrier_up",
    "movement_detected": "movement_detected",
    "agent_discovered": "agent_discovered",
    "dhcp_discover_sent": "dhcp_started",
    "address_acquired": "address_acquired",
    "dhcp_ack": "address_acquired",
    "boundary_decision": "boundary_decision",
    "registration_sent": "registration_sent",
    "registration_accepted": "registration_accepted",
    "returned_home": "returned_home",
    "deregistered": "deregistered",
    "ike_update": "mobike_update",
    "ike_updown": "ike_established",
}

# ``handoff[N].phases_ms.X``: ms from the move to the first such moment in the handoff
PHASES: dict[str, str] = {
    "link_down": "the runner took the carrier away",
    "link_up": "the runner attached the node to the new network",
    "carrier_down": "the MN saw carrier go",
    "carrier_up": "the MN saw carrier come back",
    "movement_detected": "the MN decided it may have moved",
    "agent_discovered": "the MN heard a new agent",
    "dhcp_started": "the MN sent DHCPDISCOVER",
    "address_acquired": "the MN had a co-located address (DHCPACK)",
    "home_agent_unreachable": "an ICMP unreachable said the HA is not reachable directly",
    "boundary_decision": "the MN decided inside or outside",
    "external_registration": "dual MIP: the external HA accepted",
    "ike_established": "an IKE SA came up",
    "mobike_update": "MOBIKE moved the IKE SA",
    "registration_sent": "the MN sent its registration request",
    "registration_accepted": "the MN's registration was accepted",
    "deregistered": "the MN's deregistration was accepted (back home)",
    "returned_home": "the MN knew it was home",
    "first_packet_down": "the first probe packet after the move reached the MN",
    "first_packet_up": "the first probe packet after the move reached the correspondent",
}


# ``handoff[N].FIELD`` in a summary and in expectations: its kind (number, text, the phases
# (each a number), or a record for pictures) and meaning, from summary.json's definition
HANDOFF_FIELDS: dict[str, tuple[str, str]] = handoff_fields()

# --- signalling messages: the events that record one, for ladders and the floor --------------
# DHCP: event -> message
DHCP_SENT = {
    "dhcp_discover_sent": "DHCPDISCOVER",
    "dhcp_request_sent": "DHCPREQUEST",
    "dhcp_release_sent": "DHCPRELEASE",
}
DHCP_RECEIVED = {"dhcp_offer": "DHCPOFFER", "dhcp_ack": "DHCPACK", "dhcp_nak": "DHCPNAK"}
# Mobile IP registrations: event -> (message, the field naming the peer's address). A home
# agent (or the MIP proxy's front, the same core) logs each request on arrival and each
# reply it sends; a foreign agent logs what it relays.
MIP_SENT = {
    "registration_sent": ("RRQ", "to"),
    "registration_retransmitted": ("RRQ", "to"),
    "request_relayed": ("RRQ", "home_agent"),
    "proxy_upstream_sent": ("RRQ", "to"),
    "reply_relayed": ("RRP", "home_address"),
    "registration_reply_sent": ("RRP", "to"),
}
MIP_RECEIVED = {
    "registration_accepted": ("RRP", "from"),
    "proxy_upstream_accepted": ("RRP", "from"),
    "registration_received": ("RRQ", "src"),
}

# events that say an agent is up, and (for an MN) that it knows where it is
AGENT_READY_EVENTS: dict[str, tuple[str, ...]] = {
    "ha": ("agent_started",),
    "fa": ("agent_started",),
    "proxy": ("agent_started",),
    "mn": ("returned_home", "registration_accepted", "deregistered"),
}

# statistics a metric takes over the repetitions of one move (handoff[N].interruption_ms.p95)
PERCENTILE_STATS = ("p50", "p95", "p99", "max")


def suggest(name: str, known: dict[str, str] | list[str]) -> str:
    """`` (did you mean X?)`` for a near miss, else the empty string."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def unknown_event(name: str) -> str | None:
    """Why ``name`` is not an event name, or None when it is one."""
    if name in EVENTS:
        return None
    return f"unknown event {name!r}{suggest(name, EVENTS)}; see testbed schema events"


def unknown_phase(name: str) -> str | None:
    if name in PHASES:
        return None
    hint = suggest(name, PHASES) or f" (phases: {', '.join(PHASES)})"
    return f"unknown phase {name!r}{hint}"
