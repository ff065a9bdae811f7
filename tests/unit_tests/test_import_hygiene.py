"""core/ and storage/ stay importable without UI or web code, and validate stays light."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["textual", "rich", "starlette", "uvicorn", "fastapi", "httpx", "boto3", "swiftclient"]


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def heavy_in(modules: set[str]) -> list[str]:
    return [m for m in HEAVY if m in modules]


def test_core_imports_no_ui_or_web_code():
    modules = loaded_after(
        "import trainui.core.manifest, trainui.core.definition, trainui.core.yamlnodes"
    )
    assert heavy_in(modules) == []
    assert not any(m.startswith(("trainui.tui", "trainui.service")) for m in modules)


def test_the_validate_command_imports_nothing_heavy(tmp_path):
    manifest = tmp_path / "m.yml"
    manifest.write_text("model_definition: {}\n")
    modules = loaded_after(
        "import sys\nfrom trainui.cli import main\n"
        f"try:\n    main(['validate', {str(manifest)!r}])\nexcept SystemExit:\n    pass"
    )
    assert "yaml" in modules
    assert heavy_in(modules) == []
