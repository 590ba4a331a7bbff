"""Everything between WeChat and the domain, one package per concern: ``chat`` (callbacks,
router, dialog), ``nlu`` (understanding Chinese), ``wechat`` (API clients, pay, stand-in),
``seats`` (the Redis seat inventory), ``infra`` (settings, storage, logs, metrics) and the two
composition roots, ``app`` (the aiohttp application) and ``cli`` (the ``cinebot`` command)."""
