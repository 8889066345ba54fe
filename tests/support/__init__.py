"""Test helpers (independent references, tiny assets, the pack loader, the ComfyUI host).

Imported as ``tests.support.<module>``; shared fixtures are in ``tests/conftest.py``."""
