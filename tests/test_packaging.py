"""The package list in pyproject.toml covers every package folder of the project."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = setuptools.get("package-dir", {})
    folders = {"aaex_agents": ROOT / "aaex_agents", "discovery": ROOT / "discovery",
               "marketplace": ROOT / "marketplace"}
    folders.update({name: ROOT / path for name, path in mapping.items()})
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            found.add(".".join((name, *parts)))
    assert found == set(setuptools["packages"])
