"""Peer servers the benchmarks measure streamd against, in the same run."""
