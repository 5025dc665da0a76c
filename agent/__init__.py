"""aami-agent: the AAMI node daemon.

A poll, top to bottom: `poller` fetches assignments (ETag) → `cache` downloads and
verifies each script through `trust` → `scheduler` decides what is due → `executor`
runs it (timeout, caps, clean env) → `spool` stores the result durably → `reporter`
sends it to the server exactly once. `daemon` wires these together; `cli` is the
entry point.
"""

__version__ = "0.1.0"
