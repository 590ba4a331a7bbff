"""Schema migrations (tortoise), one module per step, applied in order at start-up and by
``cinebot migrate``."""
