"""``identity.testing`` stands alone: it imports nothing from this project's ``tests/``."""

from __future__ import annotations

import subprocess
import sys


def test_importing_identity_testing_and_its_plugin_loads_no_test_module() -> None:
    probe = (
        "import sys, identity.testing, identity.testing.pytest_plugin\n"
        "print(sorted(m for m in sys.modules if m == 'tests' or m.startswith('tests.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
