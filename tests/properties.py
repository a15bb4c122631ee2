"""How property tests run: the same examples on every run in ``make test``, a random search in ``make fuzz``.

``HYPOTHESIS_PROFILE`` picks the profile (``ci`` unless set): ``ci`` is derandomized (the examples follow
from each test's own code, not from a clock), keeps no example database between runs and ignores timing, so
a run passes or fails the same way every time. ``fuzz`` draws new examples from the seed pytest is given
(``--hypothesis-seed``, printed by ``scripts/fuzz.py`` for every run) with ``FUZZ_EXAMPLES`` per property.
Every failing example either finds is kept as an explicit ``@example`` (``tests/mutations.py: FOUND``).
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20000"))

# Timing is not behaviour: a slow machine must not fail a test (too_slow, deadline) by itself.
_UNTIMED = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, **_UNTIMED)
settings.register_profile(
    "fuzz",
    derandomize=False,
    database=None,
    print_blob=True,
    **_UNTIMED,
)
settings.load_profile(PROFILE)


def budget(ci_examples: int, **overrides: Any) -> settings:
    """Settings for one property: ``ci_examples`` examples in ``make test``, ``FUZZ_EXAMPLES`` when fuzzing;
    anything else as the profile says, but for ``overrides``."""
    return settings(max_examples=FUZZ_EXAMPLES if PROFILE == "fuzz" else ci_examples, **overrides)
