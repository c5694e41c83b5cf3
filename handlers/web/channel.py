"""The web page as a channel (bot.services.channels): a delivery's page `/s/<token>`,
the anonymous page `/w/<survey>` and the pop-up widget (pages.py, widget.py). It cannot
write first (a page is opened by its link, which the other channels and the caller's own
app carry), and has no address: the token in the link is the start payload and names the
delivery. Its inbound requests are forms, checked by a CSRF token and the question's
position (a form sent twice changes nothing), and a survey link's token spends the
failed-attempts budget when unknown. Every option is a button; nothing caps them."""

from __future__ import annotations

from bot.services.channels import AddressKind, Spec
from handlers.channels import Plugin
from handlers.web import widget

SPEC = Spec("web", AddressKind.LINK, pushes=False, inbound=True, receipts=False)
PLUGIN = Plugin(SPEC, lambda settings: True, operations=widget.OPERATIONS)
