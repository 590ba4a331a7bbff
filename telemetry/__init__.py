"""Projector telemetry: the reading schema, ingest (HTTP and the Redis stream), detectors,
rules, the alert lifecycle, health scores, the fleet simulator and replay."""
