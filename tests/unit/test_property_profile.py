"""``make test`` draws the same property-test examples on every run (issue 20: a fresh clone failed once)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from tests.mutations import Body, bodies
from tests.properties import PROFILE, budget


def _drawn() -> list[Body]:
    seen: list[Body] = []

    @budget(25)
    @given(body=bodies())
    def collect(body: Body) -> None:
        seen.append(body)

    collect()
    return seen


@pytest.mark.skipif(PROFILE != "ci", reason="make fuzz draws new examples on purpose")
def test_the_suite_draws_the_same_bodies_every_run() -> None:
    assert settings.default.derandomize and settings.default.database is None
    assert settings.default.deadline is None  # a slow machine does not fail a test by itself
    assert _drawn() == _drawn()
