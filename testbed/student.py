"""A class on one server: the student a command works for.

Every student picks a short name once and exports it in each terminal::

    export TESTBED_STUDENT=alice

(``--student NAME`` on ``testbed up``, ``run`` and ``clean`` says the same for one command;
``sudo`` drops the environment, hence ``sudo .venv/bin/testbed run --student=$TESTBED_STUDENT
...`` in the labs, or a sudoers ``Defaults env_keep += "TESTBED_STUDENT"``.) From it derive:

* **results**: ``testbed run`` writes ``RESULTS/STUDENT/SCENARIO/RUN_ID`` (``results/alice/
  lab-01-.../``), so ``latest`` and the live tools follow the student's own run, not a
  neighbour's run of the same lab;
* **lab names**: a lab built by ``testbed up`` for a student is named ``NAME-STUDENT``
  (``lab01-alice``; default ``TOPOLOGY-STUDENT``), its files go to ``/run/testbed/NAME-STUDENT``
  and the labs' texts put its agents' files in ``/tmp/NAME-STUDENT``; the lab records its
  student;
* **cleaning**: ``testbed clean --all`` removes only the cleaner's own idle labs (another
  student's are skipped, named; ``testbed down NAME`` removes one), and never a lab whose
  owner process is alive, whoever's it is.

Nothing changes without a student: results in ``RESULTS/SCENARIO``, lab names as given.

A student name is 1 to 12 lowercase letters, digits and single hyphens, starting with a
letter: a lab name is at most 24 characters (``testbed.lab.state.validate_lab_name``), and
``lab05-`` plus 12 leaves room; the namespaces are ``tb-LAB.NODE``.
"""

from __future__ import annotations

import os
import re

ENV = "TESTBED_STUDENT"
MAX_LEN = 12
NAME = re.compile(r"^[a-z](?:-?[a-z0-9])*$")


def validate_student(name: str, where: str = "--student") -> str:
    if len(name) > MAX_LEN or not NAME.match(name):
        raise ValueError(
            f"{where}: invalid student name {name!r}: use 1-{MAX_LEN} lowercase letters, "
            "digits and single hyphens, starting with a letter (e.g. alice, bob2)"
        )
    return name


def current(explicit: str | None = None) -> str | None:
    """The student: ``explicit`` (``--student``), else ``$TESTBED_STUDENT``; None (no
    student) when neither is set or both are empty (``--student=$TESTBED_STUDENT`` with the
    variable unset means no student)."""
    if explicit:
        return validate_student(explicit)
    value = os.environ.get(ENV, "")
    return validate_student(value, where=ENV) if value else None


def lab_name(name: str | None, student: str | None, default: str) -> str:
    """The name of a lab built by ``testbed up``: as given without a student; for a student,
    ``default-STUDENT`` when no name is given, and a given name must end in ``-STUDENT`` (a
    name without it would be shared by every student who types it)."""
    if student is None:
        return name or default
    if name is None:
        return f"{default}-{student}"
    if not name.endswith(f"-{student}"):
        raise ValueError(
            f"lab name {name!r} is not student {student}'s: name it {name}-{student} (every "
            "student's labs end in -STUDENT, so that two students never share one)"
        )
    return name


def results_root(results: str | os.PathLike[str], student: str | None) -> str:
    """Where ``testbed run`` puts its scenarios' directories: ``RESULTS/STUDENT``."""
    return os.path.join(results, student) if student else os.fspath(results)
