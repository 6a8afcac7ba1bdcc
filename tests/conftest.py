"""Hypothesis profiles for the whole suite.

``ci`` (the default): derandomized, so a run is a pure function of the code and a red CI always
means a change in the code, never an unlucky draw. ``fuzz`` (``HYPOTHESIS_PROFILE=fuzz``, what
``scripts/fuzz`` runs): random seeds and many more examples, to find new failures; each one
found is pinned in its test with ``@example`` so the ``ci`` profile replays it from then on.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=100,
    deadline=None,
    print_blob=True,
    database=None,
)
settings.register_profile(
    "fuzz",
    derandomize=False,
    max_examples=2000,
    deadline=None,
    print_blob=True,
    database=DirectoryBasedExampleDatabase(".hypothesis/examples"),  # replays what it found
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")
