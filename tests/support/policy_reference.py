"""The policy's rules written out plainly, product by product, to check what the service serves
against: an implementation of docs/POLICY.md that shares no code with `finverse_reco.policy`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from finverse_reco.customers import CustomerProfile
from finverse_reco.products import Product

KYC_ORDER = {"none": 0, "pending": 1, "verified": 2}


@dataclass(frozen=True)
class Feedback:
    """One impression (of `products`, on `channel`), click or dismissal by the customer."""

    kind: str
    products: tuple[str, ...]
    at: datetime
    channel: str | None = None


@dataclass(frozen=True)
class Known:
    """What the service may know of a customer: their profile (None: none, or the store was
    down), the products they applied for, the demographics events carried, their feedback on
    lists, and the channel the list is for."""

    profile: CustomerProfile | None = None
    applied: frozenset[str] = frozenset()
    age_group: str | None = None
    income_range: str | None = None
    location: str | None = None
    feedback: tuple[Feedback, ...] = ()
    channel: str | None = None


def lower_bound(band: str | None) -> float | None:
    if not band:
        return None
    head = band.replace("+", "-").split("-")[0].strip().lower()
    scale = 1000.0 if head.endswith("k") else 1.0
    try:
        return float(head.rstrip("k")) * scale
    except ValueError:
        return None


def violations(
    product_id: str,
    catalog: Mapping[str, Product],
    rules: Mapping,
    known: Known,
    now: datetime,
) -> list[str]:
    """Every rule (by kind) that `product_id` breaks for this customer; empty: it may be served.
    `rules` is the rules file as TOML data."""
    product = catalog.get(product_id)
    if product is None:
        return ["withdrawn"] if catalog else []
    broken = []
    if product.available_from is not None and now < product.available_from:
        broken.append("unavailable")
    if product.available_until is not None and now >= product.available_until:
        broken.append("unavailable")
    profile = known.profile
    age = now.year - profile.birth_year - 1 if profile and profile.birth_year else None
    if age is None:
        bound = lower_bound(known.age_group)
        age = None if bound is None else int(bound)
    income = profile.annual_income if profile else None
    if income is None:
        income = lower_bound((profile.income_range if profile else None) or known.income_range)
    residency = profile.residency if profile else None
    region = (profile.region if profile else None) or known.location
    kyc = profile.kyc_status.value if profile and profile.kyc_status else None
    risk = profile.risk_profile if profile else None
    holdings = set(profile.holdings) if profile else set()
    category = product.category.casefold()
    for rule in rules.get("rules", []):
        kind = rule["kind"]
        repeatable = {c.casefold() for c in rule.get("repeatable_categories", [])}
        if (kind == "holdings" and product_id in holdings and category not in repeatable) or (
            kind == "applied" and product_id in known.applied and category not in repeatable
        ):
            broken.append(kind)
        elif kind == "eligibility":
            closed = category in {
                c.casefold()
                for c in rule.get(
                    "fail_closed_categories", ["credit_card", "personal_loan", "mortgage"]
                )
            }
            extra = {
                name.casefold(): needs for name, needs in rule.get("categories", {}).items()
            }.get(category, {})
            min_age = max(product.min_age or 0, extra.get("min_age") or 0)
            min_income = max(product.min_income or 0, extra.get("min_income") or 0)
            needed_kyc = max(
                KYC_ORDER.get(product.required_kyc, 2) if product.required_kyc else 0,
                KYC_ORDER[extra["required_kyc"]] if extra.get("required_kyc") else 0,
            )
            checks = [
                (min_age > 0, age, lambda v, m=min_age: v >= m),
                (min_income > 0, income, lambda v, m=min_income: v >= m),
                (needed_kyc > 0, kyc, lambda v, m=needed_kyc: KYC_ORDER[v] >= m),
                (product.residencies is not None, residency, _in(product.residencies)),
                (extra.get("residencies") is not None, residency, _in(extra.get("residencies"))),
                (product.regions is not None, region, _in(product.regions)),
            ]
            for required, value, passes in checks:
                if required and (closed if value is None else not passes(value)):
                    broken.append(kind)
                    break
        elif kind == "contact_limit" and _over_limit(product_id, category, rule, known, now):
            broken.append(kind)
        elif kind == "dismissed":
            since = now - timedelta(days=rule.get("days", 30))
            if any(
                f.kind == "dismiss" and f.products == (product_id,) and f.at >= since
                for f in known.feedback
            ):
                broken.append(kind)
        elif kind == "suitability" and product.risk_level is not None:
            if risk is None:
                derived = rule.get("unknown_risk_profile", 2)
                if age is None or age >= rule.get("senior_age", 65):
                    derived = min(derived, rule.get("senior_risk_profile", 1))
                risk = derived
            if product.risk_level > risk:
                broken.append(kind)
    return broken


def _over_limit(product_id: str, category: str, rule: Mapping, known: Known, now: datetime) -> bool:
    """Shown `max_impressions` times in `days` (on the rule's channel, if it names one) since the
    latest click on it; a rule for another channel or category does not apply."""
    channel = rule.get("channel")
    if channel is not None and known.channel != channel:
        return False
    if rule.get("category") is not None and rule["category"].casefold() != category:
        return False
    start = now - timedelta(days=rule.get("days", 7))
    for f in known.feedback:
        if f.kind == "product_click" and f.products == (product_id,):
            start = max(start, f.at)
    shown = [
        f
        for f in known.feedback
        if f.kind == "impression"
        and product_id in f.products
        and start < f.at <= now
        and (channel is None or f.channel == channel)
    ]
    return len(shown) >= rule.get("max_impressions", 3)


def _in(allowed: Iterable[str] | None):
    return lambda value: value in set(allowed or ())
