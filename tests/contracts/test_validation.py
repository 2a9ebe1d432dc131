"""The one ValidationError describer: where (dotted, or a name for the whole input) and
what, never the input value nor pydantic's URL."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from contracts.validation import describe_validation, validation_errors


class Inner(BaseModel):
    size: int


class Outer(BaseModel):
    password: str
    items: list[Inner]


def _error(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        Outer.model_validate(data)
    return info.value


def test_every_error_is_where_and_what() -> None:
    exc = _error({"password": 12345678, "items": [{"size": "big"}]})
    assert validation_errors(exc) == [
        ("password", "Input should be a valid string"),
        ("items.0.size", "Input should be a valid integer, unable to parse string as an integer"),
    ]
    text = describe_validation(exc)
    assert text.startswith("password: Input should be a valid string; items.0.size: ")
    assert "12345678" not in text  # never the input (it may be a secret)
    assert "https://" not in text


def test_the_whole_input_is_named_and_first_keeps_one() -> None:
    exc = _error([1, 2])
    assert describe_validation(exc, "(body)") == (
        "(body): Input should be a valid dictionary or instance of Outer"
    )
    two = _error({})
    assert describe_validation(two, first=True) == "password: Field required"
