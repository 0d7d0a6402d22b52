"""Content blocks a tool or prompt may return, and the conversion of plain return values.

Handlers may return ``str`` (one text block), a dict, dataclass, TypedDict or pydantic model (structured
content plus its JSON as text), a list of these content objects (sent as given), or a :class:`ToolResult`
for full control.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


def _b64(data: bytes | str) -> str:
    # Bytes are encoded for the wire; a str is taken to be base64 already.
    return base64.b64encode(data).decode("ascii") if isinstance(data, bytes) else data


class Content:
    """Base of the content helpers: ``to_dict()`` gives the wire form."""

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class Text(Content):
    text: str
    annotations: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return _with_annotations({"type": "text", "text": self.text}, self.annotations)


@dataclass
class Image(Content):
    """An image; ``data`` is raw bytes or a base64 string."""

    data: bytes | str
    mime_type: str
    annotations: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return _with_annotations({"type": "image", "data": _b64(self.data), "mimeType": self.mime_type}, self.annotations)


@dataclass
class Audio(Content):
    """Audio; ``data`` is raw bytes or a base64 string."""

    data: bytes | str
    mime_type: str
    annotations: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return _with_annotations({"type": "audio", "data": _b64(self.data), "mimeType": self.mime_type}, self.annotations)


@dataclass
class EmbeddedResource(Content):
    """A resource's contents inlined: give ``text`` or ``blob`` (bytes or base64)."""

    uri: str
    text: str | None = None
    blob: bytes | str | None = None
    mime_type: str | None = None
    annotations: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return _with_annotations(
            {
                "type": "resource",
                "resource": resource_contents(self.uri, self.text if self.blob is None else self.blob, self.mime_type),
            },
            self.annotations,
        )


@dataclass
class ResourceLink(Content):
    """A link to a resource the client may read later."""

    uri: str
    name: str
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None
    annotations: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "resource_link", "uri": self.uri, "name": self.name}
        for key, value in (("title", self.title), ("description", self.description), ("mimeType", self.mime_type)):
            if value is not None:
                out[key] = value
        return _with_annotations(out, self.annotations)


@dataclass
class ToolResult:
    """An explicit tool result: content blocks, optional structured content, and the error flag."""

    content: list[Content | dict[str, Any]] = field(default_factory=list)
    structured: dict[str, Any] | None = None
    is_error: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"content": [content_dict(c) for c in self.content]}
        if self.structured is not None:
            out["structuredContent"] = self.structured
        if self.is_error:
            out["isError"] = True
        return out


def _with_annotations(block: dict[str, Any], annotations: dict[str, Any] | None) -> dict[str, Any]:
    if annotations:
        block["annotations"] = annotations
    return block


def content_dict(item: Content | dict[str, Any] | str) -> dict[str, Any]:
    """One content block in wire form."""
    if isinstance(item, Content):
        return item.to_dict()
    if isinstance(item, str):
        return {"type": "text", "text": item}
    if isinstance(item, dict) and isinstance(item.get("type"), str):
        return item
    raise TypeError(f"not a content block: {item!r}")


def resource_contents(uri: str, value: str | bytes | None, mime_type: str | None = None) -> dict[str, Any]:
    """TextResourceContents for str, BlobResourceContents (base64) for bytes."""
    out: dict[str, Any] = {"uri": uri}
    if mime_type:
        out["mimeType"] = mime_type
    if isinstance(value, bytes):
        out["blob"] = base64.b64encode(value).decode("ascii")
    else:
        out["text"] = value if value is not None else ""
    return out


def to_jsonable(value: Any) -> Any:
    """Dataclasses and pydantic models as plain JSON data; other values unchanged."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json.loads(json.dumps(dataclasses.asdict(value), default=str))
    return value


def tool_result(value: Any) -> dict[str, Any]:
    """Turn a tool handler's return value into a CallToolResult."""
    if isinstance(value, ToolResult):
        return value.to_dict()
    if value is None:
        return {"content": []}
    if isinstance(value, str):
        return {"content": [{"type": "text", "text": value}]}
    if isinstance(value, Content):
        return {"content": [value.to_dict()]}
    if isinstance(value, list) and value and all(isinstance(v, Content) for v in value):
        return {"content": [v.to_dict() for v in value]}
    value = to_jsonable(value)
    text = json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, dict):
        return {"content": [{"type": "text", "text": text}], "structuredContent": value}
    return {"content": [{"type": "text", "text": text}]}
