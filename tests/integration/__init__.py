"""Integration tests: real SQLite files and real HTTP servers on 127.0.0.1, a folder
per stage of ``hookgate``; what they share is in ``harness.py`` and ``conftest.py``.

Each test folder is a package (``tests/`` itself is not), so pytest imports a test
file by its dotted name (``integration.outbound.test_dispatch``) and same-named
files in different folders cannot clash.
"""
