"""HTML and plain text to browser pages.

HTML is parsed with lxml, stripped of scripts, styles, navigation chrome and
form controls, its links turned into `【id†text】` markers (with `†domain` for
other sites) and its images into `[Image N: alt]`, then converted to Markdown
by html-to-markdown so headings, lists, tables and code stay readable.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import lxml.etree
import lxml.html

from tools.browser.page import Page, get_domain

# Elements whose content is never page text.
_DROP_TAGS = (
    "script", "style", "noscript", "template", "svg", "canvas", "iframe", "frame",
    "object", "embed", "math", "nav", "button", "select", "textarea", "input",
    "option", "datalist", "dialog", "head",
)  # fmt: skip
_CHROME_XPATH = lxml.etree.XPath(
    "//*[@hidden or @aria-hidden or @role] | /html/body/header | /html/body/footer"
)
_CHROME_ROLES = frozenset(("navigation", "search", "menu", "menubar", "banner", "contentinfo"))
_SKIP_SCHEMES = ("mailto:", "javascript:", "tel:", "data:", "about:", "blob:")

_CHAR_SUBS = (("【", "〖"), ("】", "〗"), ("\u200b", ""), ("\ufeff", ""))
# Inline tags whose markup carries nothing the model needs; their text stays.
_UNWRAP_TAGS = ("span", "font", "b", "strong", "em", "i", "u", "mark", "small", "big", "ins", "label", "form", "fieldset")
_XML_DECL_RE = re.compile(r"^\s*<\?xml[^>]*\?>")
_SPACE_RE = re.compile(r"\s+")
_TRAILING_SPACE_RE = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_LINES_RE = re.compile(r"\n{3,}")

_converter = None


def clean_text(text: str) -> str:
    """Replace the characters that could forge link and citation markers; drop zero-width ones."""
    if text.isascii():
        return text
    for old, new in _CHAR_SUBS:
        if old in text:
            text = text.replace(old, new)
    return text


def html_to_page(html: str, url: str, title: str | None = None) -> Page:
    """Turn an HTML document into a page whose text starts with a `URL:` line."""
    html = _XML_DECL_RE.sub("", clean_text(html), count=1)
    try:
        root = lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError):
        return text_to_page("", url, title)

    if not title:
        node = root.find(".//title")
        title = _merge_space(node.text_content()) if node is not None else ""
    title = title or get_domain(url)

    base = url
    base_node = root.find(".//base[@href]")
    if base_node is not None and url:
        base = urljoin(url, base_node.get("href", ""))

    _drop_chrome(root)
    _replace_images(root)
    urls = _replace_links(root, base, get_domain(url))
    _replace_scripts(root)
    # Fewer nodes for the converter; some sites wrap the whole page in one form.
    lxml.etree.strip_tags(root, *_UNWRAP_TAGS)

    body = _to_markdown(lxml.html.tostring(root, encoding="unicode"))
    return Page(url=url, title=title, text=f"\nURL: {url}\n{body}", urls=urls)


def text_to_page(text: str, url: str, title: str | None = None) -> Page:
    """Turn plain text (or raw source) into a page, keeping its lines as they are."""
    text = clean_text(text).replace("\r\n", "\n").replace("\r", "\n")
    return Page(url=url, title=title or get_domain(url), text=f"\nURL: {url}\n{text}")


def _drop_chrome(root: lxml.html.HtmlElement) -> None:
    for node in _CHROME_XPATH(root):
        if node.getparent() is None:
            continue
        if (
            node.tag in ("header", "footer")
            or node.get("hidden") is not None
            or node.get("aria-hidden") == "true"
            or node.get("role") in _CHROME_ROLES
        ):
            node.drop_tree()
    lxml.etree.strip_elements(root, *_DROP_TAGS, lxml.etree.Comment, with_tail=False)


def _replace_images(root: lxml.html.HtmlElement) -> None:
    for n, img in enumerate(root.iter("img")):
        alt = _merge_space(img.get("alt") or img.get("title") or "")
        _become_text(img, f"[Image {n}: {alt}]" if alt else f"[Image {n}]")


def _replace_links(root: lxml.html.HtmlElement, base: str, own_domain: str) -> dict[str, str]:
    urls: dict[str, str] = {}
    ids: dict[str, str] = {}
    for a in list(root.iter("a")):
        href = (a.get("href") or "").strip()
        if not href:
            continue
        text = _merge_space(a.text_content()).replace("†", "‡")
        if href.startswith("#") or href.lower().startswith(_SKIP_SCHEMES) or not text:
            _become_text(a, text)
            continue
        try:
            target = urljoin(base, href)
            parts = urlsplit(target)
        except ValueError:
            _become_text(a, text)
            continue
        if parts.scheme not in ("http", "https") or not parts.hostname:
            _become_text(a, text)
            continue
        target = target.split("#", 1)[0] if parts.fragment else target
        link_id = ids.get(target)
        if link_id is None:
            link_id = ids[target] = str(len(urls))
            urls[link_id] = target
        domain = parts.hostname
        marker = f"【{link_id}†{text}】" if domain == own_domain else f"【{link_id}†{text}†{domain}】"
        _become_text(a, marker)
    return urls


def _replace_scripts(root: lxml.html.HtmlElement) -> None:
    for tag, fmt in (("sup", "^{%s}"), ("sub", "_{%s}")):
        for node in list(root.iter(tag)):
            text = _merge_space(node.text_content())
            _become_text(node, fmt % text if text else "")


def _become_text(node: lxml.html.HtmlElement, text: str) -> None:
    """Replace `node` by an inline span holding `text` (its tail is kept)."""
    tail = node.tail
    node.clear()
    node.tag = "span"
    node.text = text
    node.tail = tail


def _merge_space(text: str) -> str:
    return _SPACE_RE.sub(" ", text).strip()


def _to_markdown(html: str) -> str:
    global _converter
    if _converter is None:
        _converter = _make_converter()
    text = _converter(html)
    text = _TRAILING_SPACE_RE.sub("", text)
    return _BLANK_LINES_RE.sub("\n\n", text).strip("\n")


def _make_converter():
    import html_to_markdown as h2m

    options = h2m.ConversionOptions(
        extract_metadata=False,
        autolinks=False,
        preprocessing=h2m.PreprocessingOptions(enabled=False),
    )

    def convert(html: str) -> str:
        return h2m.convert(html, options).content

    return convert
