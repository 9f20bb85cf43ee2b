"""Outside services the daemon talks to: AIDB (skill discovery, publishing, the history outbox)."""
