"""Read-path tests against a real InfluxDB 2.x.

A package, so that its conftest does not shadow tests/conftest.py as module `conftest`.
"""
