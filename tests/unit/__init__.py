"""Unit tests: pure functions and modules alone, a folder per stage of ``hookgate``.

Each test folder is a package (``tests/`` itself is not), so pytest imports a test
file by its dotted name (``unit.outbound.test_retry``) and same-named files in
different folders cannot clash.
"""
