"""Scheduled work: APScheduler in every process, each tick run by one leader (a Redis lock)."""
