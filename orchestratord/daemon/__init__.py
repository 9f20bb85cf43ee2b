"""The long-running service: lifecycle, sd_notify, the control API, its connections, units/."""
