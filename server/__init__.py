"""aami-server: the config server (REST API, Agent API, web UI)."""

__version__ = "0.1.0"
