"""The fleet soak: real agent daemons against a real server, over time, with faults."""
