"""The dashboard, `/admin/`: server-rendered pages for the CX team (see frame.py for the
login, the session and CSRF)."""

from __future__ import annotations

from aiohttp.web import RouteDef

from handlers.dashboard import alerts, data, figures, frame
from handlers.dashboard.frame import dashboard

routes: list[RouteDef] = [*frame.routes, *figures.routes, *data.routes, *alerts.routes]

__all__ = ["dashboard", "routes"]
