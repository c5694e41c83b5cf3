"""Test doubles and helpers shared by tests/ and bench/: a package of their own, so that the
benchmarks import no test module (the Bot API stand-in, test databases, a clock, a free port,
a cuttable TCP proxy). Not part of the installed product."""
