"""The test suite: stories of users (``test_*.py``), fixtures in ``conftest.py`` and ``support.py``."""
