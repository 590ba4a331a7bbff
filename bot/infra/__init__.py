"""Infrastructure every layer but ``domain`` may use: settings, SQL and Redis storage, the
Redis command batcher, clock, logs, metrics, outage handling, signed tokens, strict parsing."""
