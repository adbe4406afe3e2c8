"""pyproject.toml states the range CI tests, and ci/lower-bounds.txt pins exactly its lower ends."""

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def _requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras if not r.startswith("onediff-idc")]


def _lower_bound(requirement: Requirement) -> str | None:
    bounds = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    return bounds[0] if bounds else None


def test_lower_bounds_file_pins_every_lower_bound_of_pyproject():
    pins = {}
    for line in (REPO / "ci" / "lower-bounds.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    stated = {canonicalize_name(r.name): _lower_bound(r) for r in _requirements()}
    assert None not in stated.values(), f"every dependency needs a lower bound: {stated}"
    assert pins == stated


def test_transformers_range_is_the_tested_one():
    (transformers,) = [r for r in _requirements() if r.name == "transformers"]
    assert transformers.specifier.contains("5.23.0") and transformers.specifier.contains("5.24.0")
    assert not transformers.specifier.contains("5.22.2") and not transformers.specifier.contains("5.25.0")
