"""Records, rules and use cases of a cinema chain. Knows nothing of WeChat, HTTP or Redis."""

MODEL_MODULES = [
    "domain.cinemas",
    "domain.catalog",
    "domain.people",
    "domain.devices",
    "domain.outbox",
    "domain.audit",
    "domain.orders",
    "domain.promotions",
    "domain.keys",
    "domain.workorders",
    "domain.touchpoints",
    "domain.feedback",
    "domain.rights",
    "domain.rollups",
]
MIGRATIONS = "domain.migrations"

# For `tortoise -c domain.TORTOISE_ORM makemigrations` after a model change.
TORTOISE_ORM = {
    "connections": {"default": "sqlite://:memory:"},
    "apps": {
        "models": {"models": MODEL_MODULES, "default_connection": "default", "migrations": MIGRATIONS}
    },
    "use_tz": True,
    "timezone": "UTC",
}
