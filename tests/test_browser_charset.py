"""Page bytes are decoded as a browser would: Encoding Standard labels only, valid Unicode out."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tools.browser.charset import decode, encoding_for, valid_text
from tools.browser.fetch import Fetcher, HostPolicy


def has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def served(content_type: str, body: bytes) -> str:
    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    transport = httpx.MockTransport(lambda r: httpx.Response(200, headers={"content-type": content_type}, content=body))
    fetcher = Fetcher(transport=transport, resolver=resolve, policy=HostPolicy())
    return asyncio.run(fetcher.fetch("https://site.example.com/")).text


def test_utf7_is_not_a_browser_encoding():
    text = served("text/plain; charset=utf-7", b"+2AA-")
    assert text == "+2AA-" and not has_surrogate(text)


@pytest.mark.parametrize(
    "label",
    [
        "rot13",
        "unicode_escape",
        "raw_unicode_escape",
        "idna",
        "punycode",
        "utf-7",
        "base64",
        "hex",
        "zlib",
        "bz2",
        "utf-32",
        "cp1140",
        "mbcs",
    ],
)
def test_python_only_codecs_are_ignored(label):
    assert encoding_for(label) is None
    assert served(f"text/plain; charset={label}", b"plain \\u0041 text") == "plain \\u0041 text"
    assert decode(b"<meta charset=" + label.encode() + b"><p>\\x41</p>", None, sniff_meta=True).endswith("\\x41</p>")


def test_utf16_from_a_meta_tag_means_utf8():
    body = '<meta charset="utf-16"><p>café</p>'.encode()
    assert decode(body, None, sniff_meta=True) == '<meta charset="utf-16"><p>café</p>'
    assert "café" in served("text/html", body)


def test_labels_follow_the_encoding_standard():
    assert encoding_for(" Latin1 ") == encoding_for("ascii") == encoding_for("iso-8859-1") == "windows-1252"
    assert encoding_for("utf-16") == "utf-16le" and encoding_for("x-sjis") == "shift_jis"
    assert encoding_for("iso-2022-kr") == "replacement"
    assert decode(b"\x93quoted\x94", "iso-8859-1", sniff_meta=False) == "\u201cquoted\u201d"  # windows-1252
    assert decode(b"anything", "hz-gb-2312", sniff_meta=False) == "\ufffd"
    assert decode("Привет".encode("koi8-r"), "koi8", sniff_meta=False) == "Привет"


def test_bom_wins_and_broken_utf16_is_replaced_not_surrogates():
    assert decode("\ufeffhé".encode("utf-8"), "windows-1251", sniff_meta=False) == "hé"
    lone = b"\xff\xfe" + b"a\x00" + b"\x00\xd8" + b"b\x00"  # UTF-16LE with a lone high surrogate
    text = decode(lone, None, sniff_meta=False)
    assert text == "a\ufffdb" and not has_surrogate(text)
    assert not has_surrogate(served("text/plain; charset=utf-16le", b"\x00\xd8\x00\xdc\x00\xd8"))


def test_undeclared_bytes_are_utf8_else_windows_1252():
    assert decode("é".encode(), None, sniff_meta=False) == "é"
    assert decode(b"caf\xe9", None, sniff_meta=False) == "café"


def test_controls_and_surrogates_become_replacement_characters():
    assert valid_text("a\x00b\x1bc\ud800d\tf\n") == "a\ufffdb\ufffdc\ufffdd\tf\n"
    assert "\x00" not in served("text/html", b"<p>nul\x00here</p>")
