"""internal-comms: status reports of a run, as Markdown, to a file, the log and a webhook."""
