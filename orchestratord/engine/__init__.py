"""Running workflows: the engine, the driver of one run, attempts, retry, compensation,
the step context and the runners."""
