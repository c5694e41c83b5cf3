"""Phone numbers as every part of the product keeps them: E.164 ("+4915112345678")."""

from __future__ import annotations

import phonenumbers


def e164(text: str, *, valid: bool = True) -> str | None:
    """`text` (in international format) as E.164; None when it is not a number, or, with
    `valid`, not one that can be assigned (phonenumbers' metadata of each country)."""
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None
    if valid and not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
