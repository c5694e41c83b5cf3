"""What a team deploying Otklik reads before running it: the package's metadata and licence,
and the compose file that starts it on PostgreSQL (.ci/image builds and runs the image
itself; no compose tool runs here, so its structure is checked)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def project() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(config["project"])


def test_the_licence_file_is_the_declared_licence() -> None:
    assert project()["license"] == "MIT"
    assert project()["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text


def test_the_metadata_says_what_it_is_and_where_it_runs() -> None:
    meta = project()
    assert len(meta["description"]) > 40
    assert meta["readme"] == "README.md"
    assert meta["requires-python"] == ">=3.11"
    versions = {c.rsplit(" :: ", 1)[1] for c in meta["classifiers"]
                if c.startswith("Programming Language :: Python :: 3.")}
    assert versions == {"3.11", "3.12"}
    assert any(c.startswith("Development Status ::") for c in meta["classifiers"])
    assert meta["scripts"] == {"otklik": "bot.cli:main"}


def test_compose_starts_otklik_on_postgresql_after_its_migrations_ran_once() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "otklik"}
    assert services["postgres"]["healthcheck"]["test"][0] == "CMD-SHELL"
    migrate, otklik = services["migrate"], services["otklik"]
    assert migrate["command"] == ["otklik", "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert otklik["command"] == ["otklik", "run"]
    assert otklik["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    for service in (migrate, otklik):  # one image, one database, from the YAML anchor
        assert service["build"] == {"context": "."}
        assert service["environment"]["DATABASE_URL"].startswith(
            "postgresql+asyncpg://otklik:")
        assert "@postgres:5432/otklik" in service["environment"]["DATABASE_URL"]
    assert "otklik-data:/data" in otklik["volumes"]
    assert set(compose["volumes"]) == {"postgres-data", "otklik-data"}


def test_the_image_runs_unprivileged_with_a_python_healthcheck_and_a_data_volume() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "ARG BASE=python:3.12-slim" in dockerfile
    assert "\nUSER 10001" in dockerfile
    assert "VOLUME /data" in dockerfile
    # The instruction, its continuation lines joined: a minimal base has no curl.
    healthcheck = dockerfile.split("\nHEALTHCHECK ", 1)[1].split("\nCMD ", 1)[0]
    assert 'CMD ["python", "-c"' in healthcheck
    assert "/healthz" in healthcheck
