"""The parts of a ``multipart/form-data`` body (RFC 7578), as the Graph Store Protocol lets a client send several
RDF documents in one request (SPARQL 1.1 Graph Store HTTP Protocol §5.5).

Parsed by python-multipart (the parser Starlette uses for forms) from the body already read within the size
limit, so the limit holds for the whole body and every part is in memory, named for error messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

__all__ = ["FormPart", "MultipartError", "form_parts"]

_MAX_PARTS = 100


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data; the message says why in one sentence."""


@dataclass(frozen=True)
class FormPart:
    """One part: its name (the form field's name, else its filename, else its position), media type and bytes."""

    name: str
    media_type: str
    data: bytes


def form_parts(body: bytes, content_type: str) -> list[FormPart]:
    """The parts of ``body``, a multipart/form-data document whose Content-Type header is ``content_type``.

    Raises MultipartError for a missing boundary, a malformed body, no parts, or more than 100 parts.
    """
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise MultipartError("a multipart/form-data body needs a boundary parameter in its Content-Type")
    parts: list[FormPart] = []
    headers: dict[str, str] = {}
    field: list[bytes] = []
    value: list[bytes] = []
    data: list[bytes] = []

    def on_part_begin() -> None:
        headers.clear()
        data.clear()

    def on_header_field(buf: bytes, start: int, end: int) -> None:
        field.append(buf[start:end])

    def on_header_value(buf: bytes, start: int, end: int) -> None:
        value.append(buf[start:end])

    def on_header_end() -> None:
        headers[b"".join(field).decode("latin-1").lower()] = b"".join(value).decode("latin-1")
        field.clear()
        value.clear()

    def on_part_data(buf: bytes, start: int, end: int) -> None:
        data.append(buf[start:end])

    def on_part_end() -> None:
        if len(parts) >= _MAX_PARTS:
            raise MultipartError(f"a multipart body may have at most {_MAX_PARTS} parts")
        _, disposition = parse_options_header(headers.get("content-disposition"))
        raw_name = disposition.get(b"name") or disposition.get(b"filename")
        name = raw_name.decode("utf-8", "replace") if raw_name else f"part {len(parts) + 1}"
        kind = parse_options_header(headers.get("content-type"))[0].decode("latin-1").lower()
        parts.append(FormPart(name, kind, b"".join(data)))

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_part_data": on_part_data, "on_part_end": on_part_end})
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as e:
        raise MultipartError(f"malformed multipart/form-data body: {e}") from None
    if not parts:
        raise MultipartError("the multipart/form-data body has no parts")
    return parts
