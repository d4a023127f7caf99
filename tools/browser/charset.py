"""Decoding page bytes the way a browser does.

Only the encodings of the WHATWG Encoding Standard are honoured, under the
labels that standard defines; any other label (``utf-7``, ``rot13``,
``unicode_escape``, ``idna``, ...) is ignored as a browser ignores it. The
order is a browser's: byte-order mark, then the HTTP ``charset``, then (for
HTML) a ``<meta>`` declaration, where the UTF-16 labels mean UTF-8; without
one, UTF-8 if the bytes are valid UTF-8, else windows-1252. The text that
comes out is valid Unicode without the control characters that XML tools
reject: no lone surrogates, no NUL.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Encoding Standard name -> (Python codec, labels besides the name itself).
_ENCODINGS: dict[str, tuple[str, str]] = {
    "utf-8": ("utf-8", "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf8 x-unicode20utf8"),
    "ibm866": ("cp866", "866 cp866 csibm866"),
    "iso-8859-2": ("iso8859_2", "csisolatin2 iso-ir-101 iso8859-2 iso88592 iso_8859-2 iso_8859-2:1987 l2 latin2"),
    "iso-8859-3": ("iso8859_3", "csisolatin3 iso-ir-109 iso8859-3 iso88593 iso_8859-3 iso_8859-3:1988 l3 latin3"),
    "iso-8859-4": ("iso8859_4", "csisolatin4 iso-ir-110 iso8859-4 iso88594 iso_8859-4 iso_8859-4:1988 l4 latin4"),
    "iso-8859-5": (
        "iso8859_5",
        ("csisolatincyrillic cyrillic iso-ir-144 iso8859-5 iso88595 iso_8859-5 iso_8859-5:1988"),
    ),
    "iso-8859-6": (
        "iso8859_6",
        (
            "arabic asmo-708 csiso88596e csiso88596i csisolatinarabic ecma-114 iso-8859-6-e "
            "iso-8859-6-i iso-ir-127 iso8859-6 iso88596 iso_8859-6 iso_8859-6:1987"
        ),
    ),
    "iso-8859-7": (
        "iso8859_7",
        (
            "csisolatingreek ecma-118 elot_928 greek greek8 iso-ir-126 iso8859-7 iso88597 "
            "iso_8859-7 iso_8859-7:1987 sun_eu_greek"
        ),
    ),
    "iso-8859-8": (
        "iso8859_8",
        (
            "csiso88598e csisolatinhebrew hebrew iso-8859-8-e iso-ir-138 iso8859-8 iso88598 "
            "iso_8859-8 iso_8859-8:1988 visual"
        ),
    ),
    "iso-8859-8-i": ("iso8859_8", "csiso88598i logical"),
    "iso-8859-10": ("iso8859_10", "csisolatin6 iso-ir-157 iso8859-10 iso885910 l6 latin6"),
    "iso-8859-13": ("iso8859_13", "iso8859-13 iso885913"),
    "iso-8859-14": ("iso8859_14", "iso8859-14 iso885914"),
    "iso-8859-15": ("iso8859_15", "csisolatin9 iso8859-15 iso885915 iso_8859-15 l9"),
    "iso-8859-16": ("iso8859_16", ""),
    "koi8-r": ("koi8_r", "cskoi8r koi koi8 koi8_r"),
    "koi8-u": ("koi8_u", "koi8-ru"),
    "macintosh": ("mac_roman", "csmacintosh mac x-mac-roman"),
    "windows-874": ("cp874", "dos-874 iso-8859-11 iso8859-11 iso885911 tis-620"),
    "windows-1250": ("cp1250", "cp1250 x-cp1250"),
    "windows-1251": ("cp1251", "cp1251 x-cp1251"),
    "windows-1252": (
        "cp1252",
        (
            "ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 iso-ir-100 "
            "iso8859-1 iso88591 iso_8859-1 iso_8859-1:1987 l1 latin1 us-ascii x-cp1252"
        ),
    ),
    "windows-1253": ("cp1253", "cp1253 x-cp1253"),
    "windows-1254": (
        "cp1254",
        ("cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9 iso_8859-9:1989 l5 latin5 x-cp1254"),
    ),
    "windows-1255": ("cp1255", "cp1255 x-cp1255"),
    "windows-1256": ("cp1256", "cp1256 x-cp1256"),
    "windows-1257": ("cp1257", "cp1257 x-cp1257"),
    "windows-1258": ("cp1258", "cp1258 x-cp1258"),
    "x-mac-cyrillic": ("mac_cyrillic", "x-mac-ukrainian"),
    "gbk": ("gb18030", "chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 iso-ir-58 x-gbk"),
    "gb18030": ("gb18030", ""),
    "big5": ("big5hkscs", "big5-hkscs cn-big5 csbig5 x-x-big5"),
    "euc-jp": ("euc_jp", "cseucpkdfmtjapanese x-euc-jp"),
    "iso-2022-jp": ("iso2022_jp", "csiso2022jp"),
    "shift_jis": ("cp932", "csshiftjis ms932 ms_kanji shift-jis sjis windows-31j x-sjis"),
    "euc-kr": (
        "cp949",
        ("cseuckr csksc56011987 iso-ir-149 korean ks_c_5601-1987 ks_c_5601-1989 ksc5601 ksc_5601 windows-949"),
    ),
    "replacement": ("", "csiso2022kr hz-gb-2312 iso-2022-cn iso-2022-cn-ext iso-2022-kr"),
    "utf-16be": ("utf-16-be", "unicodefffe"),
    "utf-16le": ("utf-16-le", "csunicode iso-10646-ucs-2 ucs-2 unicode unicodefeff utf-16"),
    "x-user-defined": ("", ""),
}

_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xfe\xff", "utf-16be"), (b"\xff\xfe", "utf-16le"))
_META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([^\s"'>;/]+)""", re.IGNORECASE)
# Characters XML tools refuse: C0 controls other than tab, newline and carriage
# return, lone surrogates, and the two non-characters U+FFFE and U+FFFF.
_INVALID_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@lru_cache(maxsize=1)
def _labels() -> dict[str, str]:
    table = {}
    for name, (_, labels) in _ENCODINGS.items():
        table[name] = name
        for label in labels.split():
            table[label] = name
    return table


def encoding_for(label: str | None) -> str | None:
    """The Encoding Standard name for ``label`` (None if a browser would not know it)."""
    if not label:
        return None
    return _labels().get(label.strip(" \t\n\f\r\"'").lower())


def valid_text(text: str) -> str:
    """``text`` with lone surrogates and XML-incompatible controls replaced by U+FFFD."""
    return _INVALID_RE.sub("\ufffd", text)


def decode(body: bytes, charset: str | None, *, sniff_meta: bool) -> str:
    """Decode a response body as a browser would (see the module docstring)."""
    name = None
    for bom, bom_name in _BOMS:
        if body.startswith(bom):
            name, body = bom_name, body[len(bom) :]
            break
    name = name or encoding_for(charset)
    if name is None and sniff_meta and (match := _META_CHARSET_RE.search(body[:4096])):
        name = encoding_for(match.group(1).decode("ascii", "replace"))
        if name in ("utf-16be", "utf-16le"):  # a page that can declare it in ASCII is not UTF-16
            name = "utf-8"
        elif name == "x-user-defined":
            name = "windows-1252"
    if name is None:
        try:
            return valid_text(body.decode("utf-8"))
        except UnicodeDecodeError:
            name = "windows-1252"
    return valid_text(_decode_as(body, name))


def _decode_as(body: bytes, name: str) -> str:
    if name == "replacement":
        return "\ufffd" if body else ""
    if name == "x-user-defined":
        return "".join(chr(b) if b < 0x80 else chr(0xF780 + b - 0x80) for b in body)
    return body.decode(_ENCODINGS[name][0], errors="replace")
