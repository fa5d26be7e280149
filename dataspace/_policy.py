"""ODRL policies a researcher picks for a published result, and their evaluation against a consumer's claims.

Three kinds of constraint, each a one-line choice: use only for a named purpose (``purpose eq``), only by members
of a consortium (``pht:memberOf eq``), only until a date (``dateTime lteq``). All constraints of the one ``use``
permission must hold. Anything else is refused when the policy is made or read, so an offer never carries a
constraint that nothing checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ._vocab import MEMBER_OF

__all__ = ["Claims", "Constraint", "Policy", "PolicyInvalid"]

_OPERATORS = {"purpose": "eq", MEMBER_OF: "eq", "dateTime": "lteq"}
_SPEC_KEYS = {"purpose": "purpose", "member": MEMBER_OF, "until": "dateTime"}


class PolicyInvalid(ValueError):
    """A policy this connector cannot offer or evaluate; ``str()`` is one sentence."""


@dataclass(frozen=True)
class Claims:
    """What a consumer's verified identity token says: who it is, its consortia, its declared purposes."""

    participant: str
    memberships: frozenset[str] = frozenset()
    purposes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Constraint:
    """One atomic ODRL constraint: ``left_operand operator right_operand``."""

    left_operand: str
    operator: str
    right_operand: str

    def __post_init__(self) -> None:
        if _OPERATORS.get(self.left_operand) != self.operator:
            raise PolicyInvalid(f"The constraint {self.left_operand} {self.operator} is not one this connector "
                                f"evaluates (purpose eq, {MEMBER_OF} eq, dateTime lteq).")
        if not self.right_operand:
            raise PolicyInvalid(f"The constraint on {self.left_operand} has an empty right operand.")
        if self.left_operand == "dateTime":
            _parse_time(self.right_operand)

    def refusal(self, claims: Claims, now: datetime) -> str | None:
        """Why ``claims`` do not satisfy this constraint at ``now``; None when they do."""
        if self.left_operand == "purpose" and self.right_operand not in claims.purposes:
            return f"the policy allows use only for the purpose {self.right_operand}"
        if self.left_operand == MEMBER_OF and self.right_operand not in claims.memberships:
            return f"the policy allows use only by members of {self.right_operand}"
        if self.left_operand == "dateTime" and now > _parse_time(self.right_operand):
            return f"the policy allowed use only until {self.right_operand}"
        return None


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PolicyInvalid(f"{text!r} is not an ISO 8601 date and time.") from None
    if value.tzinfo is None:
        raise PolicyInvalid(f"The date {text!r} needs a time zone (e.g. Z).")
    return value


@dataclass(frozen=True)
class Policy:
    """The constraints of one ``use`` permission (none: anyone in the data space may use it)."""

    constraints: tuple[Constraint, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> Policy:
        """A researcher's choice, e.g. ``"purpose=cancer-research,member=urn:consortium:x,until=2027-01-01T00:00:00Z"``.

        >>> Policy.parse("purpose=cancer-research").constraints[0].operator
        'eq'
        """
        constraints = []
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key.strip() not in _SPEC_KEYS:
                raise PolicyInvalid(f"{part!r} is not purpose=..., member=... or until=....")
            left = _SPEC_KEYS[key.strip()]
            constraints.append(Constraint(left, _OPERATORS[left], value.strip()))
        return cls(tuple(constraints))

    @classmethod
    def from_odrl(cls, rules: dict[str, Any]) -> Policy:
        """The policy of an ODRL offer or agreement (already schema-valid): one ``use`` permission, atomic
        constraints, no prohibition or obligation."""
        permissions = rules.get("permission", [])
        if rules.get("prohibition") or rules.get("obligation") or len(permissions) != 1 \
                or permissions[0].get("action") not in ("use", "odrl:use"):
            raise PolicyInvalid("Only a policy with exactly one use permission and no prohibition or duty is "
                                "offered here.")
        out = []
        for c in permissions[0].get("constraint", []):
            if not isinstance(c.get("rightOperand"), str) or "leftOperand" not in c:
                raise PolicyInvalid("Only atomic constraints with a text right operand are evaluated here.")
            out.append(Constraint(c["leftOperand"], c["operator"], c["rightOperand"]))
        return cls(tuple(out))

    def to_odrl(self) -> dict[str, Any]:
        """The ``permission`` part of an ODRL offer or agreement in DSP's compact JSON-LD."""
        permission: dict[str, Any] = {"action": "use"}
        if self.constraints:
            permission["constraint"] = [{"leftOperand": c.left_operand, "operator": c.operator,
                                         "rightOperand": c.right_operand} for c in self.constraints]
        return {"permission": [permission]}

    def refusals(self, claims: Claims, now: datetime | None = None) -> list[str]:
        """Every reason ``claims`` do not satisfy the policy (empty: they do).

        >>> Policy.parse("purpose=x").refusals(Claims("urn:a", purposes=frozenset({"y"})))
        ['the policy allows use only for the purpose x']
        """
        at = now or datetime.now(timezone.utc)
        return [r for c in self.constraints if (r := c.refusal(claims, at)) is not None]

    @property
    def usable_until(self) -> datetime | None:
        """The earliest end of use among the dateTime constraints (None: no end)."""
        ends = [_parse_time(c.right_operand) for c in self.constraints if c.left_operand == "dateTime"]
        return min(ends) if ends else None
