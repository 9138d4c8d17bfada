"""E.164 phone numbers: a plus sign, then 7 to 15 digits, the first not zero (Niue's and
Tokelau's numbers have 7)."""

from __future__ import annotations

import re

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
MASK_KEPT_START, MASK_KEPT_END = 3, 3  # characters a masked number keeps: "+44", "111"


class PhoneNumberError(ValueError):
    pass


def validate_e164(number: object) -> str:
    """Return the number unchanged if it is E.164; raise PhoneNumberError saying what is wrong."""
    if not isinstance(number, str):
        raise PhoneNumberError(f'{number!r} is not a phone number (write it as a string like "+447700900123")')
    if E164.fullmatch(number):
        return number
    hint = "write it in E.164 form: + then country code and number, 7 to 15 digits, no spaces, e.g. +447700900123"
    if number.strip() != number or " " in number or "-" in number:
        raise PhoneNumberError(f"{number!r} contains spaces or dashes; {hint}")
    if not number.startswith("+"):
        raise PhoneNumberError(f"{number!r} has no leading + and country code; {hint}")
    raise PhoneNumberError(f"{number!r} is not a valid international number; {hint}")


def masked(number: str) -> str:
    """`number` for a log line (the journal is read by more people than the outbox): the + and the
    first country digits, and the last 3 digits, e.g. +44*******111; all masked if it is shorter."""
    if len(number) <= MASK_KEPT_START + MASK_KEPT_END:
        return "*" * len(number)
    return number[:MASK_KEPT_START] + "*" * (len(number) - MASK_KEPT_START - MASK_KEPT_END) + number[-MASK_KEPT_END:]
