"""Every fuzz target over its seeds and regression inputs, then a bounded, deterministic number of
mutations of them (``FUZZ_MUTATIONS`` per target, default 5000; a seeded mutator, so a failure
reproduces anywhere). Longer, random exploration: ``python -m tests.fuzz.run`` (README.md here)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.fuzz.corpus import CORPUS, KNOWN, REGRESSIONS, inputs
from tests.fuzz.mutator import mutate
from tests.fuzz.targets import TARGETS

MUTATIONS = int(os.environ.get("FUZZ_MUTATIONS", "5000"))
SEED = os.environ.get("FUZZ_SEED", "streamd")


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_and_regressions(name: str) -> None:
    seeds = inputs(CORPUS, name)
    assert seeds, f"tests/fuzz/corpus/{name}/ is empty: python -m tests.fuzz.seeds writes it"
    for path in seeds + inputs(REGRESSIONS, name):
        TARGETS[name](path.read_bytes())


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_mutated_inputs(name: str) -> None:
    pool = [p.read_bytes() for p in inputs(CORPUS, name) + inputs(REGRESSIONS, name)]
    rng = random.Random(f"{SEED}:{name}")
    for i in range(MUTATIONS):
        data = mutate(rng.choice(pool), rng, pool)
        try:
            TARGETS[name](data)
        except Exception as exc:
            raise AssertionError(
                f"{name}: mutation {i} (FUZZ_SEED={SEED}) broke the contract with {exc!r}; input {data!r}. "
                f"Keep it: python -m tests.fuzz.run {name} --save-hex {data.hex()}"
            ) from exc


_KNOWN = [(name, path) for name in sorted(TARGETS) for path in inputs(KNOWN, name)]


@pytest.mark.xfail(strict=True, reason="a reported finding not fixed yet (tests/fuzz/README.md)")
@pytest.mark.parametrize(("name", "path"), _KNOWN, ids=[f"{n}/{p.name}" for n, p in _KNOWN])
def test_known_unfixed_findings(name: str, path: Path) -> None:
    """Crash inputs of bugs outside this suite's owner's reach, reported and waiting for a fix:
    once one passes (strict xfail turns that into a failure), move it to ``regressions/``."""
    TARGETS[name](path.read_bytes())


def test_the_explorer_runs_a_target_with_hypothesis(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.fuzz import run

    assert run.main(["--list", "--hypothesis"]) == 0
    assert set(capsys.readouterr().out.split()) == set(TARGETS)
    assert run.main(["session", "--hypothesis", "--examples", "50"]) == 0
