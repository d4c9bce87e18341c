"""Bases for the API's input serializers, so what the schema promises is what is
checked:

- RequestSerializer: a JSON value of the wrong type is refused, not coerced. A
  string field given 0 or 1.5 is a 400 (DRF would store "0"); a decimal amount
  is a string ("25.00"), as the schema says, never a binary float.
- QuerySerializer: a query parameter given blank (`?state=`) is validated like
  any value (DRF would treat it as absent), and one given twice is a 400.
- BoundedCharField: `max_length` is the server's real limit (so the schema's
  maxLength is true) and the message names the limit and the size.
"""
from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers


class RequestSerializer(serializers.Serializer):
    def to_internal_value(self, data):
        if isinstance(data, Mapping) and not hasattr(data, "getlist"):
            errors = {}
            for name, field in self.fields.items():
                if field.read_only or name not in data or data[name] is None:
                    continue
                value = data[name]
                if isinstance(field, serializers.DecimalField) and not (isinstance(value, str) and value.strip()):
                    # DRF would read a blank string as null (for a spend cap: no cap at all).
                    errors[name] = [f'Send the amount as a string, e.g. "25.00"{", or null for none" if field.allow_null else ""} '
                                    f"(got {_json_type(value) if not isinstance(value, str) else 'a blank string'})."]
                elif (isinstance(field, serializers.CharField) and not isinstance(value, str)
                      and not isinstance(field, serializers.ChoiceField)):
                    errors[name] = [f"Must be a string (got {_json_type(value)})."]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class QuerySerializer(serializers.Serializer):
    def to_internal_value(self, data):
        if hasattr(data, "getlist"):
            errors, plain = {}, {}
            for name in data:
                values = data.getlist(name)
                if name in self.fields and len(values) > 1:
                    errors[name] = [f"Give {name} once (it was given {len(values)} times)."]
                plain[name] = values[-1] if values else ""
            if errors:
                raise serializers.ValidationError(errors)
            data = plain
        return super().to_internal_value(data)


class BoundedCharField(serializers.CharField):
    def __init__(self, *, max_length: int, message: str = "at most {max_length} characters (this one has {length})", **kwargs):
        self.length_message = message
        super().__init__(max_length=max_length, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if self.max_length is not None and len(value) > self.max_length:
            raise serializers.ValidationError(self.length_message.format(max_length=self.max_length, length=len(value)),
                                              code="max_length")
        return value


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
