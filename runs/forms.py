"""The answer to a `UserAgent`'s request: text, plus the fields of its JSON schema when the agent
asked for structured input (a pydantic model's `model_json_schema()`)."""

from __future__ import annotations

import json
from typing import Any

from django import forms

FIELD_PREFIX = "field__"


def _resolve(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """Follows a local `$ref` (pydantic puts enums in `$defs`) and unwraps `Optional[...]`."""
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"))
        if isinstance(target, dict):
            prop = {**target, **{k: v for k, v in prop.items() if k != "$ref"}}
    for key in ("anyOf", "oneOf"):
        options = prop.get(key)
        if isinstance(options, list):
            concrete = [o for o in options if isinstance(o, dict) and o.get("type") != "null"]
            if len(concrete) == 1:
                prop = {**_resolve(schema, concrete[0]), **{k: v for k, v in prop.items()
                                                            if k != key}}  # fmt: skip
    return prop


class JSONValueField(forms.CharField):
    """Objects and arrays (and anything the schema does not type) are typed as JSON."""

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if text in self.empty_values:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None


def _schema_field(schema: dict[str, Any], prop: dict[str, Any], required: bool) -> forms.Field:
    prop = _resolve(schema, prop)
    label = prop.get("title")
    help_text = prop.get("description", "")
    common: dict[str, Any] = {"label": label, "help_text": help_text}
    enum = prop.get("enum")
    kind = prop.get("type")
    if isinstance(enum, list) and enum and all(isinstance(v, str | int | float) for v in enum):
        choices = [("", "—")] if not required else []
        return forms.TypedChoiceField(
            choices=choices + [(json.dumps(v), str(v)) for v in enum],
            coerce=json.loads,
            required=required,
            empty_value=None,
            **common,
        )
    if kind == "boolean":
        return forms.BooleanField(required=False, **common)
    if kind == "integer":
        return forms.IntegerField(
            required=required, min_value=prop.get("minimum"), max_value=prop.get("maximum"),
            **common,
        )  # fmt: skip
    if kind == "number":
        return forms.FloatField(
            required=required, min_value=prop.get("minimum"), max_value=prop.get("maximum"),
            **common,
        )  # fmt: skip
    if kind == "string":
        return forms.CharField(
            required=required,
            min_length=prop.get("minLength"),
            max_length=prop.get("maxLength"),
            empty_value=None,
            **common,
        )
    return JSONValueField(required=required, widget=forms.Textarea(attrs={"rows": 3}), **common)


class UserInputForm(forms.Form):
    text = forms.CharField(
        label="Your reply", required=False, strip=False, widget=forms.Textarea(attrs={"rows": 3})
    )

    def __init__(self, *args: Any, schema: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.schema = schema
        if schema is None:
            self.fields["text"].required = True
            return
        properties = schema.get("properties")
        required = set(schema.get("required") or ())
        for name, prop in (properties if isinstance(properties, dict) else {}).items():
            if isinstance(prop, dict):
                field = _schema_field(schema, prop, name in required)
                field.label = field.label or name
                self.fields[FIELD_PREFIX + name] = field

    def structured_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name.startswith(FIELD_PREFIX)]

    def structured_input(self) -> dict[str, Any] | None:
        """The structured answer, with unfilled optional fields left out (their defaults apply)."""
        if self.schema is None:
            return None
        return {
            name.removeprefix(FIELD_PREFIX): value
            for name, value in self.cleaned_data.items()
            if name.startswith(FIELD_PREFIX) and value is not None
        }
