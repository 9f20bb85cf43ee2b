"""The leaves every layer uses: the exception tree, paths, child processes, redaction."""
