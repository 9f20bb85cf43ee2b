"""ai-service-management: start, stop, restart and inspect named services (systemd units)."""
