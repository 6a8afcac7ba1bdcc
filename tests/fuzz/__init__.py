"""Fuzz targets for every parser of network input, their seed corpora and crash regressions.

See ``tests/fuzz/README.md``: ``test_fuzz_targets.py`` runs them bounded in the suite,
``python -m tests.fuzz.run <target>`` explores for longer (atheris where installed).
"""
