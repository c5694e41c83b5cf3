"""The SMS channel as the services see it (bot.services.channels.Spec)."""

from __future__ import annotations

from bot.services.channels import AddressKind, Caps, Spec

# Ours, and the words Twilio and the operators take as an opt-out everywhere.
OPT_OUT = frozenset({"stop", "стоп", "отписаться", "unsubscribe", "stopall", "end", "quit",
                     "cancel", "revoke", "optout", "stop all", "отписка"})
# No window, no buttons: every question is answered by typing.
SPEC = Spec("sms", AddressKind.PHONE, pushes=True, inbound=True, receipts=True,
            opt_out=OPT_OUT, caps=Caps(buttons=0))
