"""AIDB integration: skill discovery, publishing, execution history, and the execute
endpoint of AIDB's documented contract, served by us (see README, "AIDB")."""
