"""Card numbers (PANs): recognised in input, masked in everything the pipeline writes.

Two rules on purpose. Refusing input must not refuse ordinary identifiers (UUIDs, hex tokens, epoch ids),
so inside a longer string only a number written as card numbers are written counts. Masking output (dead
letters, reasons, log lines, API errors) errs the other way: a number written so is masked to its first six
and last four digits (PCI DSS) whatever its first digit and even glued to letters.

Separators are what a person types between digit groups: whitespace . - / : + = _ (mixed, one to three in a
row: "4111 - 1111").
"""

from __future__ import annotations

import re

_SEP = r"[\s./:+=_-]"
_SEPS = re.compile(_SEP + "+")
#: 13 to 19 digits from a card network's first digit (Mastercard 2/5, Amex/JCB/Diners 3, Visa 4, Discover 6):
#: without the 2-6, one pure-numeric id in ten (epoch microseconds) would pass for a card number.
_PAN_DIGITS = re.compile(r"[2-6][0-9]{12,18}")
#: Cheap first look: 13 digits with at most three separators between neighbours. Nearly every identifier and
#: log line fails it in one C-level scan.
_THIRTEEN_DIGITS = re.compile(rf"[0-9](?:{_SEP}{{0,3}}[0-9]){{12}}")
_G = _SEP + "{1,3}"
#: A card number inside a longer string, as card numbers are written: contiguous, or in the printed groups
#: (4-4-4-4, 4-4-4-4-3, Amex 4-6-5, Diners 4-6-4) with any separators, not glued to other letters or digits.
#: One pattern per shape, each tried at every start (the lookahead), so neither "1234-4111-1111-1111-1111"
#: nor a 4-4-4-4 number followed by a CVV ("... 9424 123") hides one. Missed on purpose: a number glued to
#: letters ("tok4111111111111111"), which hex tokens would otherwise trip.
_WRITTEN_PANS = tuple(
    re.compile(rf"(?<![A-Za-z0-9])(?=({shape})(?![A-Za-z0-9]))")
    for shape in (
        r"[2-6][0-9]{12,18}",
        rf"[2-6][0-9]{{3}}(?:{_G}[0-9]{{4}}){{3}}",
        rf"[2-6][0-9]{{3}}(?:{_G}[0-9]{{4}}){{3}}{_G}[0-9]{{3}}",
        rf"3[0-9]{{3}}{_G}[0-9]{{6}}{_G}[0-9]{{4,5}}",
    )
)
#: Digit runs joined by separators: what masking looks inside.
_CHAIN = re.compile(rf"[0-9]+(?:{_G}[0-9]+)*")
_RUN = re.compile(r"[0-9]+")
_PRINTED_GROUPS = {(4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4)}


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def looks_like_pan(value: str) -> bool:
    """The whole value is a card number: 13 to 19 digits from 2-6 passing the Luhn check, contiguous, in the
    printed groups with any separators ("4111/1111:1111 1111"), or with the same separator throughout.

    Digits with mixed separators in other groupings are not one ("192.168.10.200:51234", "2026-12-02 18:20").
    """
    value = value.strip()
    if _CHAIN.fullmatch(value) is None:
        return False
    runs = _RUN.findall(value)
    compact = "".join(runs)
    if _PAN_DIGITS.fullmatch(compact) is None or not luhn_valid(compact):
        return False
    return len(runs) == 1 or len(set(_SEPS.findall(value))) == 1 or tuple(map(len, runs)) in _PRINTED_GROUPS


def contains_pan(value: str) -> bool:
    """A card number anywhere in the string ("card-4111111111111111", "tx:4111_1111_1111_1111"), or the whole
    string one."""
    if _THIRTEEN_DIGITS.search(value) is None:
        return False
    if looks_like_pan(value):
        return True
    return any(luhn_valid(_SEPS.sub("", m.group(1))) for shape in _WRITTEN_PANS for m in shape.finditer(value))


def _mask_chain(chain: re.Match[str]) -> str:
    """The chain of digit runs with every card number in it masked.

    A card number here is 13 to 19 digits passing Luhn (any first digit: masking errs towards masking),
    written as one: one run, or the printed groups with any separators. Dates and times ("2026-12-02
    18:20:00", "18:20:00.123+00:00") are grouped otherwise, so log timestamps stay readable. Every start is
    tried, so a card number after other digit groups ("1234 4111 1111 1111 1111") is found.
    """
    text = chain.group()
    runs = [(m.start(), m.end()) for m in _RUN.finditer(text)]
    out: list[str] = []
    done = 0  # text[:done] is already in `out`
    i = 0
    while i < len(runs):
        for j in reversed(range(i, min(i + 5, len(runs)))):  # the longest first: 4-4-4-4-3 over 4-4-4-4
            lengths = tuple(e - s for s, e in runs[i : j + 1])
            if not (13 <= lengths[0] <= 19 if i == j else lengths in _PRINTED_GROUPS):
                continue
            digits = "".join(text[s:e] for s, e in runs[i : j + 1])
            if luhn_valid(digits):
                out.append(text[done : runs[i][0]])
                out.append(digits[:6] + "*" * (len(digits) - 10) + digits[-4:])
                done = runs[j][1]
                i = j
                break
        i += 1
    out.append(text[done:])
    return "".join(out)


def mask_pans_text(text: str) -> str:
    """Every card number in `text` masked to its first six and last four digits; the rest unchanged."""
    if _THIRTEEN_DIGITS.search(text) is None:
        return text
    return _CHAIN.sub(_mask_chain, text)


#: A JSON escape of a digit or of a separator a person would put in a card number (`\u0020`, `\u0034`).
_ESCAPED = re.compile(rb"\\u00(3[0-9]|2[0-9a-fA-F]|3[aAdD]|5[fF])")
_UNESCAPED = {b"2d", b"2e", b"2f", b"20", b"2b", b"3a", b"3d", b"5f"} | {f"3{d}".encode() for d in range(10)}


def _unescape(m: re.Match[bytes]) -> bytes:
    code = m.group(1).lower()
    return bytes([int(code, 16)]) if code in _UNESCAPED else m.group(0)


def mask_pans(raw: bytes) -> bytes:
    """`mask_pans_text` on bytes that need not be UTF-8 (dead letters keep the original bytes, but no PAN).

    JSON escapes of digits and separators are written out first (the same JSON): `"4111\u00201111..."` is a
    card number to whoever reads the copy, and the escape would hide it from the mask."""
    if b"\\u00" in raw:
        unescaped = _ESCAPED.sub(_unescape, raw)
        if mask_pans_text(unescaped.decode("latin-1")) != unescaped.decode("latin-1"):
            raw = unescaped
    text = raw.decode("latin-1")  # one character per byte, so everything but the masked digits round-trips
    masked = mask_pans_text(text)
    return raw if masked == text else masked.encode("latin-1")
