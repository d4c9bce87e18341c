"""URL converters. Ids in paths are positive 64-bit integers: a 30-digit id is a
404 like any id that names nothing, not an OverflowError in the database driver."""
from django.urls import register_converter


class ObjectIdConverter:
    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(int(value))


register_converter(ObjectIdConverter, "id")
