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
        "import trainui.core.manifest, trainui.core.definition, trainui.core.yamlnodes,"
        " trainui.core.lifecycle"
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
    assert "msgspec" not in modules  # run records: the service's and the learner's, not validate's


def imports_within(package: str) -> dict[str, set[str]]:
    """For each module of ``package``, the modules of the package it imports: every import,
    those inside functions too."""
    import ast
    import importlib
    from pathlib import Path

    folder = Path(importlib.import_module(package).__file__).parent
    names = {p.stem: f"{package}.{p.stem}" for p in folder.glob("*.py")}
    names["__init__"] = package
    imports: dict[str, set[str]] = {}
    for stem, module in names.items():
        found = set()
        for node in ast.walk(ast.parse((folder / f"{stem}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        imports[module] = found & (set(names.values()) - {module})
    return imports


def in_a_circle(imports: dict[str, set[str]]) -> list[str]:
    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            m == goal or (m not in seen and reaches(m, goal, seen | {m})) for m in imports[start]
        )

    return [m for m in imports if reaches(m, m, set())]


def test_the_launchers_import_each_other_in_one_direction_only():
    """No import circle among the launchers (launch.py and ray.py had one)."""
    imports = imports_within("trainui.service.launchers")
    assert imports["trainui.service.launchers"] == set()  # the interface imports no launcher
    assert in_a_circle(imports) == []
    assert imports["trainui.service.launchers.ray"] >= {"trainui.service.launchers.ray_api"}


def test_the_learners_parts_do_not_import_the_learner():
    imports = imports_within("trainui.learner")
    assert in_a_circle(imports) == []
    assert set(imports["trainui.learner"]) >= {
        "trainui.learner.staging",
        "trainui.learner.process",
        "trainui.learner.storing",
        "trainui.learner.relay",
    }
