"""orchestratorctl: the command line, the daemon client, progress, rendering of answers."""
