"""``python -m bot.cli``: the same as ``cinebot``."""

from bot.cli import main

raise SystemExit(main())
