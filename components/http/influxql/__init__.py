"""InfluxDB 1.x read API (InfluxQL)."""
