"""The wheel is the product: every file a package reads at run time that is not Python
(templates, static files, translations, migrations) is named by pyproject's package-data,
or an installed otklik lacks it (the dashboard's templates were missing: /admin/login
answered 500 from a wheel)."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "handlers", "conversations", "storage")


def test_every_data_file_of_the_packages_is_shipped() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]
    missing = []
    for package in PACKAGES:
        base = ROOT / package
        for path in base.rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(base).as_posix()
            # setuptools' globs: "*" does not cross a "/", as fnmatch's does on a path.
            if not any(fnmatch(relative, glob) and relative.count("/") == glob.count("/")
                       for glob in globs.get(package, [])):
                missing.append(f"{package}/{relative}")
    assert missing == []
