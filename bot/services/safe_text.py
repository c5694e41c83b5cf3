"""Text that customers and calling systems wrote, shown to the team or written to a file:
one rule per medium, one helper each, used everywhere such text leaves the product.

Customer text is comments, names, external ids, choices, context values and segments (and,
in files, every other string column). Two things in it can make it say or do what it does
not say:

- Unicode bidi controls. A RIGHT-TO-LEFT OVERRIDE (U+202E) reverses what follows it, so
  "gnp.exe" reads "exe.png", and on a line that holds our own words too (an alert, a table
  row) it reverses those, so the line says something else. The controls: U+202A-U+202E
  (embeddings, overrides, their end), U+2066-U+2069 (isolates), U+200E/U+200F (marks) and
  U+061C (the Arabic letter mark).
- A spreadsheet cell starting with = + - @ tab or CR is a formula: a customer's "=1+1", or
  worse a HYPERLINK or DDE call, would run on the analyst's machine (OWASP, CSV injection).

The rule per medium:

- HTML (dashboard pages): `bdi(text)` escapes the text and wraps it in <bdi>...</bdi>, which
  confines its direction to the element.
- Plain text (Telegram messages, which are HTML only for our own markup, and e-mails, the
  digest included): `isolate(text)` wraps it in FSI ... PDI (U+2068 ... U+2069), the plain
  text form of <bdi>. Escaping for Telegram's HTML stays the caller's.
- In both, the text's own isolate controls (U+2066-U+2069) are dropped first: a PDI of its own
  would close our isolate early and let the rest out. Its embeddings and overrides stay (they
  are part of what the customer wrote) and end where our isolate ends.
- Files (the answers as CSV or XLSX, from the API and Telegram's /export): a cell cannot
  isolate, and a file is data that other programs read, so `cell(value)` drops every bidi
  control and then puts an apostrophe before a string that would start a formula, in every
  string column; numbers stay numbers.
- JSON (the API, a customer's data export) returns text as stored: it is data for programs,
  and a data-subject request gets exactly what is kept.
"""

from __future__ import annotations

from markupsafe import Markup

__all__ = ["BIDI_CONTROLS", "bdi", "cell", "isolate"]

BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
FSI, PDI = "\u2068", "\u2069"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NO_ISOLATES = str.maketrans(dict.fromkeys("\u2066\u2067\u2068\u2069"))
_NO_CONTROLS = str.maketrans(dict.fromkeys(BIDI_CONTROLS))


def isolate(text: object) -> str:
    """Plain text: `text` between FSI and PDI, without isolate controls of its own."""
    return FSI + str(text).translate(_NO_ISOLATES) + PDI


def bdi(text: object) -> Markup:
    """HTML: `text` escaped, in a <bdi> element, without isolate controls of its own."""
    return Markup("<bdi>{}</bdi>").format(str(text).translate(_NO_ISOLATES))


def cell(value: object) -> object:
    """A spreadsheet cell: a string without bidi controls that cannot start a formula;
    anything else as it is."""
    if not isinstance(value, str):
        return value
    value = value.translate(_NO_CONTROLS)
    return "'" + value if value.startswith(FORMULA_STARTS) else value
