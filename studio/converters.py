"""Path converters for client-supplied names (run ids, conversation ids, project names), shared
by studio's URLs and the apps built on it. Registered once, on import."""

import re

from django.urls import register_converter


class AnyText:
    """A client-supplied id in a path: any characters, slashes and newlines included, so that
    reversing a URL for a stored id can never fail; `reverse` percent-encodes what needs it."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class Segment(AnyText):
    """A client-supplied id as one path segment: its "/" and "%" are escaped (and `reverse`
    percent-encodes the rest), so `runs/<id>/input/<id>/` stays unambiguous for any id."""

    regex = r"[^/]+"
    _ESCAPED = re.compile("%(25|2F)")

    def to_python(self, value: str) -> str:
        return self._ESCAPED.sub(lambda m: "%" if m[1] == "25" else "/", value)

    def to_url(self, value: str) -> str:
        return value.replace("%", "%25").replace("/", "%2F")


register_converter(AnyText, "any_text")
register_converter(Segment, "segment")
