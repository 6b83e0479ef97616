"""Benchmarks of the aaex_agents SDK; see docs/benchmarks.md."""
