"""Benchmarks of agent-orchestrator: overhead against bare baselines and peer orchestrators.

Run from the repository root: `.venv/bin/python -m bench` (see bench/README.md). This
package imports nothing of the project at import time, so the peer scripts under
bench/peers/ can run as `python -m bench.peers.X` in their own virtual environment.
"""
