"""Benchmarks (`make bench`): each compares the project's path with what a user would otherwise run, in one run."""
