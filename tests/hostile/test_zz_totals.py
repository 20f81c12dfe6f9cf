"""The hostile-input run as a whole: at least 10,000 inputs, every one refused.

Runs last (file order); skipped when only some of the hostile tests were selected.
"""

from __future__ import annotations

import pytest

from tests.support.chaos_hostile import TALLY

ALL = {
    "amqp submissions (+headers)",
    "amqp envelope fields",
    "amqp raw bodies",
    "amqp forged",
    "http POST /v1/jobs",
    "http other bodies",
    "http queries and paths",
    "websocket frames",
    "reference uploads",
    "template files",
}


def test_at_least_ten_thousand_hostile_inputs_all_refused() -> None:
    missing = ALL - set(TALLY.sent)
    if missing:
        pytest.skip(f"not every hostile category ran: {sorted(missing)}")
    assert TALLY.total >= 10_000, TALLY.table()
    assert sum(TALLY.refused.values()) == TALLY.total, TALLY.failures[:20]
