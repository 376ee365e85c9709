"""The HTTP bridge between Grafana and the WAMP router."""
