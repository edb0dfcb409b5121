"""The config package's tests, one file per module of ``hookgate.config``.

A package (``__init__.py``) so that these files (``test_loader.py``, ...) do not clash
with same-named test files elsewhere, and can share ``samples.py``.
"""
