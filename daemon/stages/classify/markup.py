"""Markup: HTML, SVG, XML and MHT ("single file web page") told apart by their first bytes."""

from __future__ import annotations


def markup_format(data: bytes, mime: str) -> str | None:
    head = data[:4096]
    for bom in (b"\xef\xbb\xbf",):
        if head.startswith(bom):
            head = head[len(bom) :]
    head = head.lstrip(b" \t\r\n\x0c").lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "html"
    if head.startswith(b"<svg"):
        return "image"
    if head.startswith(b"<?xml"):
        if b"<svg" in head:
            return "image"
        if b"<html" in head:
            return "html"
        return "xml"
    if head.startswith(b"<") and mime in ("text/html", "text/xml", "application/xml"):
        return "html" if mime == "text/html" else "xml"
    if head.startswith(b"mime-version:") and b"multipart" in head:
        return "mht"  # Word/Excel "single file web page"; may carry VBA
    return None
