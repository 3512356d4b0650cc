"""The timeline's step table (``testbed.scenario.steps``): one entry per action the model
accepts, and the descriptions the progress lines and ``step`` events show."""

from __future__ import annotations

import pytest

from testbed.scenario.model import StepSpec
from testbed.scenario.steps import STEPS, describe, nat_ports


def test_every_action_of_the_model_has_a_step_and_no_other() -> None:
    assert set(STEPS) == set(StepSpec.ACTIONS)


@pytest.mark.parametrize(
    ("step", "text"),
    [
        ({"move": {"node": "mn", "to": "visited"}}, "move mn -> visited"),
        ({"move": {"node": "mn", "to": "office", "gap": 50}}, "move mn -> office (gap 50 ms)"),
        ({"link": {"node": "mn", "state": "flap"}}, "link mn flap"),
        ({"impair": {"node": "mn", "delay": "10ms"}}, "impair mn"),
        ({"nat": {"node": "fw", "action": "rebind"}}, "nat fw rebind"),
        ({"process": {"service": "ha", "action": "restart"}}, "restart ha"),
        ({"wait": {"event": "registration_accepted"}}, "wait for registration_accepted"),
        ({"wait": {"event": "returned_home", "node": "mn"}}, "wait for returned_home on mn"),
        ({"pause": True}, "pause"),
        ({"pause": "look"}, "pause look"),
        ({"sleep": 100}, "sleep 100.0"),
        ({"note": "first move"}, "note first move"),
    ],
)
def test_descriptions(step: dict, text: str) -> None:
    assert describe(StepSpec.model_validate(step)) == text


def test_each_rebind_maps_to_a_range_of_its_own() -> None:
    assert nat_ports(0) == (20000, 20999)
    assert nat_ports(3) == (23000, 23999)
    assert nat_ports(20) == nat_ports(0)  # twenty ranges, reused in turn
