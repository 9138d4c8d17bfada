"""A text as SMS parts: GSM-7 when every character fits (160 per part, 153 when split), UCS-2 only
when one does not (70 per part, 67 when split); long texts are concatenated parts, at most
GAMMU_MAX_PARTS of them. Typographic characters (curly quotes, dashes, odd spaces: a site name
typed in a word processor or on a phone) go as their GSM-7 look-alikes (`gsm7_form`), so that they
do not make every text UCS-2, two or three times the parts; a text that needs UCS-2 anyway (e.g.
Amharic) goes as it is."""

from __future__ import annotations

import gammu

from alerting.phone import validate_e164

# The GSM 03.38 default alphabet (all but ESC) and its extension table (each costs two septets).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
# Typographic characters and their GSM-7 look-alikes ("" drops one that shows nothing).
TYPOGRAPHIC = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u02bc\u00b4\u0060", "'"),  # ‘ ’ ‚ ‛ ′ ʼ ´ `
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'),  # “ ” „ ‟ ″ « »
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),  # hyphens, dashes, minus
        **dict.fromkeys(  # no-break, en, em, thin, narrow no-break and other spaces, tab
            "\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000\t", " "
        ),
        **dict.fromkeys("\u00ad\u200b\u200c\u200d\u2060\ufeff", ""),  # soft hyphen, zero-width ones
        "\u2026": "...",  # …
        "\u2022": "*",  # •
        "\u00b7": ".",  # ·
        "\u00d7": "x",  # ×
        "\u2028": "\n",
        "\u2029": "\n",
    }
)
SMSC_FROM_SIM = {"Location": 1}  # the SMS centre number stored on the SIM
DEFAULT_CLASS = -1  # no message class: an ordinary text, stored by the phone
GAMMU_MAX_PARTS = 50  # Gammu's GSM_MAX_MULTI_SMS: EncodeSMS refuses a longer text (ERR_INVALIDDATA)
GSM7_SPLIT_PART = 153  # GSM-7 characters in each part of a split text (extension characters count 2)
UCS2_SPLIT_PART = 67  # UTF-16 units in each part of a split UCS-2 text (an emoji counts 2)
CUT_MARK = " [cut]"  # ends what goes of a text too long for SMS


class SMSEncodingError(ValueError):
    """Gammu cannot make SMS parts of a text (it needs more than GAMMU_MAX_PARTS): no modem can send it."""


def is_gsm7(text: str) -> bool:
    """True when GSM-7 can carry every character (else the text must go as UCS-2)."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def gsm7_form(text: str) -> str:
    """`text` with its typographic characters as GSM-7 look-alikes (TYPOGRAPHIC) when that makes it
    all GSM-7; else `text` itself (it goes as UCS-2 anyway, which carries them)."""
    plain = text.translate(TYPOGRAPHIC)
    return plain if is_gsm7(plain) else text


def ucs2_characters(text: str) -> list[str]:
    """The characters of `text` that make it go as UCS-2 (none of TYPOGRAPHIC's), each once, in order."""
    return list(dict.fromkeys(char for char in text.translate(TYPOGRAPHIC) if not is_gsm7(char)))


def text_parts(text: str) -> list[dict]:
    """`text` (its `gsm7_form`) as Gammu's SMS parts, in sending order, without recipient or SMS
    centre (`len()` counts them); SMSEncodingError when Gammu cannot encode it."""
    text = gsm7_form(text)
    try:
        return gammu.EncodeSMS(
            {
                "Class": DEFAULT_CLASS,
                "Unicode": not is_gsm7(text),
                "Entries": [{"ID": "ConcatenatedTextLong", "Buffer": text}],
            }
        )
    except gammu.GSMError as exc:
        limit = f"{GAMMU_MAX_PARTS * GSM7_SPLIT_PART} GSM-7 or {GAMMU_MAX_PARTS * UCS2_SPLIT_PART} UCS-2 characters"
        raise SMSEncodingError(
            f"Gammu cannot make SMS parts of this text of {len(text)} characters ({type(exc).__name__}): "
            f"it makes at most {GAMMU_MAX_PARTS} parts, {limit}"
        ) from None


def cut_to_fit(text: str) -> str:
    """The longest beginning of `text` that Gammu encodes with CUT_MARK after it: what can go of a
    text too long for SMS (the site and the time come first in every text we make)."""
    fits, too_long = 0, len(text)  # text[:fits] + CUT_MARK encodes; text[:too_long] + CUT_MARK may not
    while fits < too_long:
        middle = (fits + too_long + 1) // 2
        try:
            text_parts(text[:middle] + CUT_MARK)
            fits = middle
        except SMSEncodingError:
            too_long = middle - 1
    return text[:fits] + CUT_MARK


def encode_parts(number: str, text: str, smsc: str = "") -> list[dict]:
    """Gammu message dicts ready for SendSMS, in sending order; `smsc` empty: the SIM's centre.
    PhoneNumberError or SMSEncodingError (both ValueError) when no modem can send it."""
    validate_e164(number)
    parts = text_parts(text)
    for part in parts:
        part["SMSC"] = {"Number": smsc} if smsc else dict(SMSC_FROM_SIM)
        part["Number"] = number
    return parts
