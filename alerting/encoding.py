"""A text as SMS parts: GSM-7 when every character fits (160 per part, 153 when split), UCS-2 only
when one does not (70 per part, 67 when split); long texts are concatenated parts."""

from __future__ import annotations

import gammu

from alerting.phone import validate_e164

# The GSM 03.38 default alphabet (all but ESC) and its extension table (each costs two septets).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
SMSC_FROM_SIM = {"Location": 1}  # the SMS centre number stored on the SIM
DEFAULT_CLASS = -1  # no message class: an ordinary text, stored by the phone


def is_gsm7(text: str) -> bool:
    """True when GSM-7 can carry every character (else the text must go as UCS-2)."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def encode_parts(number: str, text: str, smsc: str = "") -> list[dict]:
    """Gammu message dicts ready for SendSMS, in sending order; `smsc` empty: the SIM's centre."""
    validate_e164(number)
    parts = gammu.EncodeSMS(
        {
            "Class": DEFAULT_CLASS,
            "Unicode": not is_gsm7(text),
            "Entries": [{"ID": "ConcatenatedTextLong", "Buffer": text}],
        }
    )
    for part in parts:
        part["SMSC"] = {"Number": smsc} if smsc else dict(SMSC_FROM_SIM)
        part["Number"] = number
    return parts
