"""The declared edge: request classes parsed by one converter, schemas from the same
annotations, names and routes checked when the app starts."""

from __future__ import annotations

import enum
import types
import uuid
from typing import Annotated, ClassVar

import attrs
import pytest

from identity.domain.emails import Email
from identity.entrypoints.http import declare as d
from identity.entrypoints.http import handlers
from identity.entrypoints.http.openapi import openapi_document
from identity.entrypoints.http.problems import Problem
from tests.declared_answers import breach


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@attrs.frozen
class Sample:
    email: d.EmailAddress
    name: Annotated[str, d.Text("a name", max_length=5)]
    code: Annotated[str, d.Digits("a code", length=6)] | None = None
    count: Annotated[int, d.Integer("how many", minimum=1, maximum=3)] = 2
    colour: Annotated[Colour, d.Choice("a colour")] | None = None
    id: Annotated[uuid.UUID, d.Id("an id")] | None = None
    tags: Annotated[list[str], d.Strings("tags", max_items=2)] | None = None
    on: Annotated[bool, d.Flag("on or off")] = False
    cursor: d.Cursor | None = None


def errors_of(cls: type, data: dict[str, object]) -> dict[str, str]:
    with pytest.raises(Problem) as caught:
        d.parse(cls, data)
    assert caught.value.status == 422 and caught.value.code == "validation_error"
    assert caught.value.errors is not None
    return {error.field: error.message for error in caught.value.errors}


def test_a_good_request_is_read_into_its_class() -> None:
    parsed = d.parse(
        Sample,
        {
            "email": " Ada@EXAMPLE.com ",
            "name": "Ada",
            "code": " 123456 ",
            "count": "3",
            "colour": "blue",
            "on": "true",
            "tags": ["b", "b"],
            "unknown": "ignored",
        },
    )
    assert parsed.email == Email("Ada@example.com")
    assert (parsed.code, parsed.count, parsed.colour, parsed.on) == ("123456", 3, Colour.BLUE, True)
    assert parsed.tags == ["b"]


def test_null_is_absent_for_an_optional_field_and_missing_for_a_required_one() -> None:
    parsed = d.parse(Sample, {"email": "a@example.com", "name": "x", "count": None, "on": None})
    assert (parsed.count, parsed.on, parsed.code) == (2, False, None)
    assert errors_of(Sample, {"email": None}) == {
        "email": "field required",
        "name": "field required",
    }


def test_every_bad_field_is_reported_at_once_in_declaration_order() -> None:
    found = errors_of(
        Sample,
        {
            "email": "not an address",
            "name": "too long",
            "code": "12",
            "count": 9,
            "colour": "green",
            "id": "nope",
            "tags": ["a", "b", "c"],
            "on": 1,
            "cursor": "!!",
        },
    )
    assert found == {
        "email": "not a valid email address",
        "name": "must be at most 5 characters",
        "code": "must be 6 digits",
        "count": "must be between 1 and 3",
        "colour": "must be one of: red, blue",
        "id": "must be a UUID",
        "tags": "must have at most 2 items",
        "on": "must be true or false",
        "cursor": "not a cursor this API gave out; pass `next_cursor` as it came",
    }
    assert list(found) == [field.name for field in attrs.fields(Sample)]


@attrs.frozen
class OneOf:
    one_of: ClassVar[tuple[str, ...]] = ("a", "b")
    a: str | None = None
    b: str | None = None


def test_one_of_and_the_field_errors_come_together() -> None:
    assert errors_of(OneOf, {}) == {"a": "give exactly one of: a, b"}
    assert errors_of(OneOf, {"a": "x", "b": "y"}) == {"a": "give exactly one of: a, b"}
    assert errors_of(OneOf, {"a": 1}) == {"a": "must be a string"}
    assert d.parse(OneOf, {"a": "x", "b": None}) == OneOf("x", None)


def test_the_schema_comes_from_the_same_annotations() -> None:
    schema = d.request_schema(Sample)
    assert schema["required"] == ["email", "name"]
    assert schema["properties"]["name"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 5,
        "description": "a name",
    }
    assert schema["properties"]["code"]["type"] == ["string", "null"]
    assert schema["properties"]["count"]["default"] == 2
    assert schema["properties"]["colour"]["anyOf"][0]["enum"] == ["red", "blue"]
    assert d.request_schema(OneOf)["oneOf"] == [{"required": ["a"]}, {"required": ["b"]}]


def test_a_field_without_a_rule_is_refused_when_prepared() -> None:
    @attrs.frozen
    class Loose:
        data: bytes

    with pytest.raises(TypeError, match=r"Loose\.data"):
        d.request_fields(Loose)


def test_two_views_of_one_name_are_refused() -> None:
    def view() -> type:
        @attrs.frozen
        class Twin:
            a: str

        return Twin

    components = d.Components()
    first, second = view(), view()
    d.view_schema(first, components)
    d.view_schema(first, components)  # the same class again is fine
    with pytest.raises(d.DuplicateSchemaError, match="'Twin'"):
        d.view_schema(second, components)


def test_routes_are_collected_from_the_handler_modules_without_a_registry() -> None:
    found = d.collect(handlers)
    paths = {(entry.method, entry.path) for group in found for entry in group.declared}
    assert ("POST", "/admin/users") in paths
    module = types.ModuleType("fake")
    module.__path__ = []  # a package without modules
    assert d.collect(module) == []


def test_an_answer_its_declaration_omits_is_caught() -> None:
    """The integration suite's watcher (``tests/declared_answers.py``) can fail."""
    problem = "application/problem+json"
    document = openapi_document("http://127.0.0.1:8000")
    login = document["paths"]["/auth/login"]["post"]["responses"]
    assert breach(login, 200, "application/json", b"{}") is None
    assert breach(login, 401, problem, b'{"code": "invalid_credentials"}') is None
    assert "undeclared status 409" in str(breach(login, 409, problem, b'{"code": "email_taken"}'))
    assert "not among" in str(breach(login, 401, problem, b'{"code": "invalid_api_key"}'))
    assert "text/html" in str(breach(login, 200, "text/html", b"<p>"))
