"""Issue 18, item 5: a class on one server. The student a command works for (--student or
$TESTBED_STUDENT) names its labs and its results directory, and one student's
'testbed clean --all' leaves the other students' labs alone. No namespaces here; the
integration test is tests/integration/test_cli_lifecycle.py."""

from __future__ import annotations

import os

import pytest

from testbed import netns, student
from testbed.cli import build_parser
from testbed.lab import clean as cleaning
from testbed.lab.state import LabState, validate_lab_name

ME = (os.getpid(), netns.process_start_time(os.getpid()))


@pytest.mark.parametrize("name", ["alice", "bob2", "ann-marie", "a", "abcdefghijkl"])
def test_good_names(name: str) -> None:
    assert student.validate_student(name) == name
    # the longest lab name the labs' texts derive from a student fits the lab name rules
    validate_lab_name(f"lab05-{name}")


@pytest.mark.parametrize(
    "name", ["Alice", "2bob", "-x", "x-", "a--b", "abcdefghijklm", "al ice", "al/ice", "ali_ce"]
)
def test_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid student name"):
        student.validate_student(name)


def test_current_from_option_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(student.ENV, raising=False)
    assert student.current() is None
    assert student.current("") is None  # --student=$TESTBED_STUDENT with it unset
    assert student.current("bob") == "bob"
    monkeypatch.setenv(student.ENV, "alice")
    assert student.current() == "alice"
    assert student.current("bob") == "bob"  # the option wins
    monkeypatch.setenv(student.ENV, "Alice")
    with pytest.raises(ValueError, match="TESTBED_STUDENT: invalid student name 'Alice'"):
        student.current()


def test_lab_names() -> None:
    assert student.lab_name(None, None, "enterprise") == "enterprise"
    assert student.lab_name("lab01", None, "enterprise") == "lab01"
    assert student.lab_name(None, "alice", "enterprise") == "enterprise-alice"
    assert student.lab_name("lab01-alice", "alice", "enterprise") == "lab01-alice"
    with pytest.raises(ValueError, match="name it lab01-alice"):
        student.lab_name("lab01", "alice", "enterprise")
    with pytest.raises(ValueError, match="not student alice's"):
        student.lab_name("lab01-bob", "alice", "enterprise")


def test_results_root() -> None:
    assert student.results_root("results", None) == "results"
    assert student.results_root("results", "alice") == os.path.join("results", "alice")


def test_the_cli_takes_a_student() -> None:
    parser = build_parser()
    assert parser.parse_args(["up", "t.yaml", "--student", "alice"]).student == "alice"
    assert parser.parse_args(["run", "s.yaml", "--student=bob"]).student == "bob"
    args = parser.parse_args(["clean", "--all", "--any-student"])
    assert args.all and args.any and args.student is None


def _lab(name: str, who: str | None, kind: str = "lab", owner=None) -> LabState:
    pid, start = owner if owner is not None else (None, None)
    return LabState(name, "t.yaml", kind=kind, owner_pid=pid, owner_start=start, student=who)


@pytest.mark.parametrize(
    ("lab_student", "cleaner", "any_student", "decision"),
    [
        ("alice", "alice", False, "remove"),
        ("bob", "alice", False, "skip"),  # another student's idle lab
        (None, "alice", False, "skip"),  # nobody's: not a student's to remove
        ("bob", None, False, "skip"),  # no student set: not the students' labs either
        (None, None, False, "remove"),  # as before issue 18: no students at all
        ("bob", "alice", True, "remove"),  # the teacher, after class
        ("bob", None, True, "remove"),
    ],
)
def test_clean_all_removes_only_your_idle_labs(
    lab_student: str | None, cleaner: str | None, any_student: bool, decision: str
) -> None:
    state = _lab("x", lab_student)
    assert cleaning.verdict(state, True, cleaner, any_student) == decision
    assert cleaning.verdict(state, False, cleaner, any_student) == "keep"  # without --all


def test_a_live_owner_wins_over_everything() -> None:
    state = _lab("x", "bob", kind="run", owner=ME)
    assert cleaning.verdict(state, True, "bob", True) == "skip"


def test_the_skip_lines_say_whose(monkeypatch: pytest.MonkeyPatch) -> None:
    labs = [
        _lab("lab01-alice", "alice"),
        _lab("lab01-bob", "bob"),
        _lab("r1-0-ab", None, kind="run", owner=ME),
        _lab("pair-bob", "bob", owner=ME),
    ]
    destroyed: list[str] = []
    monkeypatch.setattr(cleaning, "all_labs", lambda: labs)
    monkeypatch.setattr(cleaning, "destroy", lambda state: destroyed.append(state.name))
    monkeypatch.setattr(cleaning.netns, "list_netns", lambda: [])
    cleaned = cleaning.clean(include_idle_labs=True, student="alice")
    assert destroyed == ["lab01-alice"]
    bob, run, live = cleaned.skipped
    assert bob == (
        "lab lab01-bob (lab): student bob's, you are alice; "
        "to remove it anyway: testbed down lab01-bob"
    )
    assert run.startswith("lab r1-0-ab (run): in use by PID ")
    assert live.startswith("lab pair-bob (lab, student bob): in use by PID ")
