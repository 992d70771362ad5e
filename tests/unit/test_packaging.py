import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_rule_environment_matches_pyproject_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {d for d in project["dependencies"] if not d.startswith("snakemake")}
    env = yaml.safe_load((REPO / "envs/imganalyzer.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip) - {"-e .."} == runtime


def test_scripts_are_thin_adapters() -> None:
    for script in (REPO / "scripts").glob("*.py"):
        lines = [line for line in script.read_text().splitlines() if line.strip()]
        assert len(lines) <= 40, f"{script.name} has {len(lines)} lines: move logic to the package"
        assert "import snakemake" not in script.read_text()


def test_package_never_imports_snakemake() -> None:
    for module in (REPO / "imganalyzer").rglob("*.py"):
        text = module.read_text()
        assert "import snakemake" not in text and "from snakemake" not in text, module


def test_every_package_module_has_a_test_file_of_its_own_name() -> None:
    """imganalyzer/<sub>/<module>.py is tested in tests/unit/<sub>/test_<module>.py."""
    package = REPO / "imganalyzer"
    missing = [
        str(module.relative_to(REPO))
        for module in package.rglob("*.py")
        if module.name not in ("__init__.py", "__main__.py")
        and not (
            REPO / "tests" / "unit" / module.parent.relative_to(package) / f"test_{module.name}"
        ).is_file()
    ]
    assert missing == [], "add tests/unit/<subpackage>/test_<module>.py for these"
