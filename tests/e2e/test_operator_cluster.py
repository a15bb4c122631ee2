"""The operator lifecycle tests (tests/operator/lifecycle.py) against a real API server."""

from __future__ import annotations

import pytest

from tests.operator.lifecycle import (
    test_child_deleted_or_edited_by_hand_is_restored,
    test_children_and_status,
    test_delete_touches_no_table_data,
    test_spec_change_rolls_writers,
    test_suspend_and_resume,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]

__all__ = [
    "test_child_deleted_or_edited_by_hand_is_restored",
    "test_children_and_status",
    "test_delete_touches_no_table_data",
    "test_spec_change_rolls_writers",
    "test_suspend_and_resume",
]
