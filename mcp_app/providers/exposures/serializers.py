"""The DRF serializer of an exposure: its allowed fields only, related objects as resource URIs.

Which related objects become links is decided per request: the serializer's context carries
``mcp_links``, a map from each related model to the exposure the caller may read (a :class:`Link`), or
None when the caller may not read that model, and then the relation is left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from django.db import models
from rest_framework import serializers


class Link(Protocol):
    """What a serializer needs of the exposure a relation points to (a ``ModelResource``)."""

    lookup_field: str

    def lookup_value(self, obj: Any) -> Any:
        """The value of ``obj``'s lookup field."""

    def uri_for_value(self, value: Any) -> str:
        """The resource URI of the object whose lookup field holds ``value``."""


def build_serializer(model: type[models.Model], fields: Iterable[str], model_fields: dict[str, models.Field]) -> type:
    """A ModelSerializer of ``model`` showing exactly ``fields``; ``model_fields`` maps those names to the
    model's fields, and the relations among them become resource URIs (see LinkField)."""
    fields = list(fields)

    class LinkField(serializers.RelatedField):
        """A related object as the URI of its resource (left out when the caller may not read its model)."""

        def __init__(self, *, related_model: type[models.Model], **kwargs: Any) -> None:
            self.related_model = related_model
            kwargs.setdefault("read_only", True)
            super().__init__(**kwargs)

        def _link(self) -> Link | None:
            return self.context.get("mcp_links", {}).get(self.related_model)

        def use_pk_only_optimization(self) -> bool:
            # The URI needs only the key when the related exposure looks objects up by primary key.
            link = self._link()
            return link is None or link.lookup_field == "pk"

        def to_representation(self, value: Any) -> Any:
            link = self._link()
            if link is None:
                return None
            return link.uri_for_value(value.pk if link.lookup_field == "pk" else link.lookup_value(value))

    relation_names = [n for n, f in model_fields.items() if f.is_relation]
    attrs: dict[str, Any] = {
        name: LinkField(
            related_model=model_fields[name].related_model,
            many=model_fields[name].many_to_many,
            read_only=True,
        )
        for name in relation_names
    }

    # Built with type(): a class statement's body could not read the parameters called model and fields.
    meta = type("Meta", (), {"model": model, "fields": fields})

    def to_representation(self: Any, instance: Any) -> dict[str, Any]:
        data = serializers.ModelSerializer.to_representation(self, instance)
        links = self.context.get("mcp_links", {})
        for name in relation_names:
            # The caller may not read the related model: the relation is not shown at all.
            if links.get(model_fields[name].related_model) is None:
                data.pop(name, None)
        return data

    attrs.update(Meta=meta, to_representation=to_representation)
    return type(f"{model.__name__}McpSerializer", (serializers.ModelSerializer,), attrs)
