"""Branching conditions as data: comparisons on answers, context and customer attributes,
combined with and / or / not. Evaluated by walking the tree, never with eval."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import Annotated, TypeAlias

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

Scalar: TypeAlias = bool | int | float | str
Value: TypeAlias = int | str | tuple[str, ...]

_SUBJECTS = ("step", "context", "customer")
_OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "contains", "exists")


class _Ops(BaseModel):
    # 1e400 is infinity to Python, and a stored script with it cannot be written as JSON.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              allow_inf_nan=False)

    eq: Scalar | None = None
    ne: Scalar | None = None
    lt: float | None = None
    lte: float | None = None
    gt: float | None = None
    gte: float | None = None
    in_: list[Scalar] | None = Field(None, alias="in")
    not_in: list[Scalar] | None = None
    contains: Scalar | None = None
    exists: bool | None = None

    @cached_property
    def _operator(self) -> tuple[str, Scalar | list[Scalar]]:
        given = [(op, getattr(self, _field(op))) for op in _OPERATORS
                 if getattr(self, _field(op)) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one operator of {', '.join(_OPERATORS)}")
        return given[0]

    def test(self, value: Value | None) -> bool:
        op, operand = self._operator
        return _test(op, operand, value)


class Threshold(_Ops):
    """An alert rule on a step's own answer: `{lte: 6}`, `{in: [no]}`."""

    @model_validator(mode="after")
    def _one(self) -> Threshold:
        _ = self._operator
        return self


class Compare(_Ops):
    """`{step: csat, lte: 2}`, `{context: call_type, in: [sales, billing]}`."""

    step: str | None = None
    context: str | None = None
    customer: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> Compare:
        subjects = [s for s in _SUBJECTS if getattr(self, s) is not None]
        if len(subjects) != 1:
            raise ValueError("name exactly one of step, context or customer")
        _ = self._operator
        return self

    def evaluate(self, facts: Facts) -> bool:
        if self.step is not None:
            value = facts.answers.get(self.step)
        elif self.context is not None:
            value = _scalar(facts.context.get(self.context))
        else:
            value = _scalar(facts.customer.get(self.customer or ""))
        return self.test(value)


class And(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    all_of: list[Condition] = Field(alias="and", min_length=1)

    def evaluate(self, facts: Facts) -> bool:
        return all(c.evaluate(facts) for c in self.all_of)


class Or(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    any_of: list[Condition] = Field(alias="or", min_length=1)

    def evaluate(self, facts: Facts) -> bool:
        return any(c.evaluate(facts) for c in self.any_of)


class Not(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    negated: Condition = Field(alias="not")

    def evaluate(self, facts: Facts) -> bool:
        return not self.negated.evaluate(facts)


def _kind(data: object) -> str:
    if isinstance(data, dict):
        return next((key for key in ("and", "or", "not") if key in data), "compare")
    if isinstance(data, And):
        return "and"
    if isinstance(data, Or):
        return "or"
    return "not" if isinstance(data, Not) else "compare"


Condition: TypeAlias = Annotated[
    Annotated[And, Tag("and")]
    | Annotated[Or, Tag("or")]
    | Annotated[Not, Tag("not")]
    | Annotated[Compare, Tag("compare")],
    Discriminator(_kind),
]


class Facts:
    """What a condition may look at: the dialogue's answers so far, context, customer."""

    __slots__ = ("answers", "context", "customer")

    def __init__(self, answers: Mapping[str, Value], context: Mapping[str, Scalar],
                 customer: Mapping[str, Scalar]) -> None:
        self.answers = answers
        self.context = context
        self.customer = customer


def step_refs(condition: Condition | None) -> Iterator[str]:
    """Every answer key a condition reads, for validating references."""
    match condition:
        case None:
            return
        case And(all_of=parts) | Or(any_of=parts):
            for part in parts:
                yield from step_refs(part)
        case Not(negated=inner):
            yield from step_refs(inner)
        case Compare(step=str(step)):
            yield step


def _field(op: str) -> str:
    return "in_" if op == "in" else op


def _scalar(value: Scalar | None) -> Value | None:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else str(value)
    return None


def _norm(value: Scalar) -> int | float | str:
    # yes/no answers are stored as words; let scripts write `eq: true` or `eq: yes`.
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _test(op: str, operand: Scalar | list[Scalar], value: Value | None) -> bool:
    if op == "exists":
        return (value is not None) is operand
    if value is None:
        return op in ("ne", "not_in")
    many = [_norm(x) for x in operand] if isinstance(operand, list) else [_norm(operand)]
    if isinstance(value, tuple):
        chosen: set[object] = set(value)
        match op:
            case "eq":
                return chosen == set(many)
            case "ne":
                return chosen != set(many)
            case "contains" | "in":
                return bool(chosen.intersection(many))
            case "not_in":
                return not chosen.intersection(many)
        return False
    match op:
        case "eq" | "contains" | "in":
            return any(_equal(value, x) for x in many)
        case "ne" | "not_in":
            return not any(_equal(value, x) for x in many)
    left, right = _number(value), _number(operand)
    if left is None or right is None:
        return False
    match op:
        case "lt":
            return left < right
        case "lte":
            return left <= right
        case "gt":
            return left > right
        case "gte":
            return left >= right
    return False


def _equal(value: int | str, operand: int | float | str) -> bool:
    if isinstance(value, int):
        number = _number(operand)
        return number is not None and number == value
    return value == operand
