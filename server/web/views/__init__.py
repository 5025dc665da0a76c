"""Page handlers, one module per part of the UI."""
