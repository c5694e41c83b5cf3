from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update

from storage.errors import NotFound
from storage.models import ScriptRow
from storage.repositories.base import Repository

# The version only: the body and source are read when a version is not parsed yet.
_ACTIVE_VERSION = select(ScriptRow.version).where(ScriptRow.survey_id == bindparam("k_survey_id"),
                                                  ScriptRow.active)
_BODY = select(ScriptRow.body).where(ScriptRow.survey_id == bindparam("k_survey_id"),
                                     ScriptRow.version == bindparam("k_version"))


class Scripts(Repository):
    """Every version of every survey script is kept: a dialogue finishes on the version it
    started with. At most one version of a survey is active (the one new dialogues use)."""

    def get(self, survey_id: str, version: int) -> ScriptRow:
        row = self.session.scalar(select(ScriptRow).filter_by(survey_id=survey_id,
                                                              version=version))
        if row is None:
            raise NotFound(f"script {survey_id} v{version}")
        return row

    def active_version(self, survey_id: str) -> int | None:
        """The version new dialogues of this survey start on, if it is switched on."""
        # Core on the connection: a third of the ORM session's cost, on every trigger.
        version = self.connection.execute(_ACTIVE_VERSION, {"k_survey_id": survey_id}).scalar()
        return None if version is None else int(version)

    def body(self, survey_id: str, version: int) -> dict[str, Any] | None:
        """A version's script as data, without the rest of its row; None if there is none."""
        return self.connection.execute(_BODY, {"k_survey_id": survey_id,
                                               "k_version": version}).scalar()

    def active_versions(self) -> list[tuple[str, int]]:
        """(survey, the version new dialogues start on) for each survey switched on."""
        return [(survey_id, version) for survey_id, version in self.connection.execute(
            select(ScriptRow.survey_id, ScriptRow.version).where(ScriptRow.active)
            .order_by(ScriptRow.survey_id))]

    def add(self, survey_id: str, body: Mapping[str, Any], source: str, checksum: str,
            created_by: str, title: Mapping[str, str], *, now: datetime,
            activate: bool = True) -> ScriptRow:
        """Store the next version: one above the highest stored, or the body's own if that is
        higher. The body is stored with that version, so a script loaded from it and the
        dialogue states it starts name the version the row has."""
        if self.session.get_bind().dialect.name == "postgresql":
            # Two processes loading at once must not both take max + 1 (SQLite's BEGIN
            # IMMEDIATE already serializes whole transactions).
            self.session.execute(select(func.pg_advisory_xact_lock(func.hashtext(survey_id))))
        highest = self.session.scalar(
            select(func.max(ScriptRow.version)).where(ScriptRow.survey_id == survey_id))
        version = max((highest or 0) + 1, int(body.get("version", 0)))
        row = ScriptRow(survey_id=survey_id, version=version, title=dict(title),
                        body={**body, "version": version}, source=source, checksum=checksum,
                        created_by=created_by, created_at=now, active=False)
        self.session.add(row)
        self.session.flush()
        if activate:
            self.set_active(survey_id, version)
        return row

    def latest(self, survey_id: str) -> ScriptRow | None:
        return self.session.scalar(
            select(ScriptRow).where(ScriptRow.survey_id == survey_id)
            .order_by(ScriptRow.version.desc()).limit(1))

    def surveys(self) -> list[tuple[ScriptRow, int | None]]:
        """Each survey's latest version, and the version that is active (None: off)."""
        latest = (select(ScriptRow.survey_id, func.max(ScriptRow.version).label("version"))
                  .group_by(ScriptRow.survey_id).subquery())
        rows = self.session.scalars(
            select(ScriptRow).join(latest, (ScriptRow.survey_id == latest.c.survey_id)
                                   & (ScriptRow.version == latest.c.version))
            .order_by(ScriptRow.survey_id)).all()
        versions = dict(self.active_versions())
        return [(row, versions.get(row.survey_id)) for row in rows]

    def versions(self, survey_id: str) -> Sequence[ScriptRow]:
        """Every stored version of the survey, oldest first."""
        return self.session.scalars(
            select(ScriptRow).where(ScriptRow.survey_id == survey_id)
            .order_by(ScriptRow.version)).all()

    def active_for(self, survey_id: str) -> ScriptRow | None:
        """The version new dialogues of this survey start on, if it is switched on."""
        return self.session.scalar(
            select(ScriptRow).where(ScriptRow.survey_id == survey_id, ScriptRow.active))

    def active(self) -> Sequence[ScriptRow]:
        return self.session.scalars(
            select(ScriptRow).where(ScriptRow.active).order_by(ScriptRow.survey_id)).all()

    def set_active(self, survey_id: str, version: int | None) -> None:
        """Make `version` the survey's one active version; None switches the survey off.
        NotFound if there is no such version."""
        if version is not None:
            self.get(survey_id, version)
        self.session.execute(
            update(ScriptRow).where(ScriptRow.survey_id == survey_id)
            .values(active=ScriptRow.version == version)
            .execution_options(synchronize_session="fetch"))
