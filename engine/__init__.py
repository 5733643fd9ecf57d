"""servegauge's engine: the command line, the coordinator, the workers, the
result store and the built-in mock server."""
