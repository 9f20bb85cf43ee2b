"""health-monitoring: systemd units, HTTP endpoints and disks, checked at once."""
