"""scripts/validate_deploy.py, imported for the tests (scripts/ is not a package)."""

from __future__ import annotations

import importlib.util
import sys

from tests.live import ROOT

_spec = importlib.util.spec_from_file_location(
    "validate_deploy", ROOT / "scripts" / "validate_deploy.py"
)
validate_deploy = importlib.util.module_from_spec(_spec)
sys.modules["validate_deploy"] = validate_deploy
_spec.loader.exec_module(validate_deploy)
