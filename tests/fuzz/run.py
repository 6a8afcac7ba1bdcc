"""Longer fuzzing of one target outside the test suite.

    python -m tests.fuzz.run <target> [-atheris_runs=N] [-max_total_time=S] [other libFuzzer flags]
    python -m tests.fuzz.run <target> --hypothesis [--examples N]
    python -m tests.fuzz.run <target> --save-hex HEX     # keep an input in regressions/<target>/
    python -m tests.fuzz.run --list

With atheris installed (in the ``test`` extra, Linux wheels) it drives libFuzzer with coverage feedback,
starting from ``corpus/<target>/`` plus ``regressions/<target>/`` (new interesting inputs go to a
scratch directory, not into the committed corpus); without it, hypothesis generates random inputs
(``st.binary()`` and mutations of the seeds). Either way, an input that breaks the target's
contract is written to ``regressions/<target>/`` and printed; fix the bug and commit the input.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import traceback
from collections.abc import Callable

from tests.fuzz.corpus import CORPUS, REGRESSIONS, inputs, save
from tests.fuzz.mutator import mutate


def _report(name: str, data: bytes) -> None:
    path = save(REGRESSIONS, name, data)
    print(f"\n{name}: contract broken by {data[:200]!r}\nsaved as {path}", file=sys.stderr)


def _targets(instrument: bool) -> dict[str, Callable[[bytes], None]]:
    """The registry, imported under atheris' coverage instrumentation of our packages if asked."""
    if not instrument:
        from tests.fuzz.targets import TARGETS

        return TARGETS
    import atheris

    with atheris.instrument_imports(include=["streamd", "sdp", "media"]):
        from tests.fuzz.targets import TARGETS
    return TARGETS


def run_atheris(name: str, target: Callable[[bytes], None], flags: list[str]) -> None:
    import atheris

    def one(data: bytes) -> None:
        try:
            target(data)
        except Exception:
            _report(name, data)
            raise

    scratch = tempfile.mkdtemp(prefix=f"streamd-fuzz-{name}-")
    seeds = [str(CORPUS / name)] + ([str(REGRESSIONS / name)] if inputs(REGRESSIONS, name) else [])
    atheris.Setup([sys.argv[0], *flags, scratch, *seeds], one)
    atheris.Fuzz()


def run_hypothesis(name: str, target: Callable[[bytes], None], examples: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    pool = [p.read_bytes() for p in inputs(CORPUS, name) + inputs(REGRESSIONS, name)]
    mutated = st.tuples(st.sampled_from(pool), st.integers(0, 2**32)).map(
        lambda pair: mutate(pair[0], random.Random(pair[1]), pool)
    )

    @settings(max_examples=examples, deadline=None, derandomize=False, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.one_of(st.binary(max_size=4096), mutated))
    def explore(data: bytes) -> None:
        try:
            target(data)
        except Exception:
            _report(name, data)
            raise

    explore()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", nargs="?")
    parser.add_argument("--list", action="store_true", help="print the target names")
    parser.add_argument("--hypothesis", action="store_true", help="use hypothesis even if atheris is there")
    parser.add_argument("--examples", type=int, default=20000, help="hypothesis examples (default 20000)")
    parser.add_argument("--save-hex", metavar="HEX", help="store this input in regressions/<target>/")
    args, flags = parser.parse_known_args(argv)
    try:
        import atheris  # noqa: F401
    except ImportError:
        args.hypothesis = True
    targets = _targets(instrument=not (args.hypothesis or args.list or args.save_hex or not args.target))
    if args.list or args.target is None:
        print("\n".join(sorted(targets)))
        return 0
    if args.target not in targets:
        parser.error(f"unknown target {args.target!r}; --list shows them")
    if args.save_hex:
        print(save(REGRESSIONS, args.target, bytes.fromhex(args.save_hex)))
        return 0
    target = targets[args.target]
    try:
        if args.hypothesis:
            run_hypothesis(args.target, target, args.examples)
        else:
            run_atheris(args.target, target, flags)
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
