"""agent-orchestrator: durable workflows of agent skills under systemd."""

__version__ = "0.1.0"
