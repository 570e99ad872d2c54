"""The policy step: what a ranked list may contain, between ranking and response on every path.

`Policy` holds the rules file; `Policy.bind(items)` compiles its rules against one model's items
(`BoundPolicy`, rebuilt when the model or the catalog changes). Per request, `filters(customer)`
gives the kernel its two filters (index/topk.py): the allow-list of items no segment rule blocks
(cached per distinct combination of the customer attributes the rules read, so a request usually
computes nothing) and the exclusions of the customer's own items; after ranking, `select` applies
the diversity caps to an over-fetched list, filling it from further down.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from finverse_reco.events import EventType
from finverse_reco.policy.customer import Customer
from finverse_reco.policy.items import ItemFacts
from finverse_reco.policy.rules import PersonalRule, RulesFile, SegmentRule

# Allow-lists kept, one per distinct combination of the attributes the rules read: as many as fit
# in this many int32 rows in all (128 MB), between 16 and 4,096 lists.
MASK_BUDGET_ROWS = 1 << 25
MASKS_KEPT_RANGE = (16, 4_096)
WITHDRAWN = "withdrawn"  # the built-in rules every list passes, named as `explain` names them
UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class CallerFilters:
    """What the caller asked for: categories, institutions, an allow-list and exclusions of ids."""

    categories: tuple[str, ...] = ()
    institutions: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.categories or self.institutions or self.only or self.exclude)


NO_CALLER_FILTERS = CallerFilters()


@dataclass(frozen=True, slots=True)
class Filters:
    """The kernel's filters: `allowed` ascending rows (None: every item), `exclude` ascending
    unique rows (None: none)."""

    allowed: np.ndarray | None
    exclude: np.ndarray | None


class Policy:
    """The rules file, ready to bind to a model's items. `enabled=False` serves lists unfiltered
    (measurements only: the benchmark's and evaluation's "policy off")."""

    def __init__(self, rules: RulesFile, *, enabled: bool = True) -> None:
        self.rules = rules
        self.enabled = enabled
        # Per event type, how far back the rules that read it look: the customer's read asks
        # each type for its own window (service/customers.py).
        self.activity_windows = activity_windows([rules])

    @property
    def version(self) -> str:
        return self.rules.version if self.enabled else "off"

    def bind(self, items: ItemFacts) -> BoundPolicy:
        return BoundPolicy(self, items)


def activity_windows(files: Iterable[RulesFile]) -> dict[EventType, timedelta]:
    """Per event type, the longest look-back any rule of these files asks of it."""
    windows: dict[EventType, timedelta] = {}
    for rules in files:
        for rule in rules.rules:
            if (need := rule.activity()) is not None:
                for kind in need.types:
                    windows[kind] = max(windows.get(kind, timedelta(0)), need.lookback)
    return dict(sorted(windows.items()))


@dataclass(eq=False)
class BoundPolicy:
    policy: Policy
    items: ItemFacts
    segment_rules: list[SegmentRule] = field(init=False)
    personal_rules: list[PersonalRule] = field(init=False)
    _masks: OrderedDict[Hashable, np.ndarray | None] = field(init=False)
    _masks_kept: int = field(init=False)
    _category_codes: list[int] = field(init=False)  # per item row: category code + 1
    _institution_codes: list[int] = field(init=False)
    _dated: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        compiled = [rule.compile(self.items) for rule in self.policy.rules.rules]
        self.segment_rules = [r for r in compiled if hasattr(r, "blocked")]
        self.personal_rules = [r for r in compiled if hasattr(r, "rows")]
        self._masks = OrderedDict()
        low, high = MASKS_KEPT_RANGE
        self._masks_kept = max(low, min(high, MASK_BUDGET_ROWS // max(self.items.n, 1)))
        items = self.items
        self._dated = ~(np.isnan(items.available_from) & np.isnan(items.available_until))
        self._category_codes = (items.category + 1).tolist()
        self._institution_codes = (items.institution + 1).tolist()

    @property
    def version(self) -> str:
        return self.policy.version

    @property
    def items_known(self) -> bool:
        """False when the catalog could not be read: every item counts as withdrawn."""
        return self.items.catalog_readable

    # --- filters -----------------------------------------------------------------------------

    def filters(
        self,
        customer: Customer,
        now: datetime,
        caller: CallerFilters = NO_CALLER_FILTERS,
        exclude: np.ndarray | None = None,
    ) -> Filters:
        """The kernel's filters for this customer and caller; `exclude` (rows the request leaves
        out anyway, such as products already seen) is merged in."""
        allowed = self._allowed(customer, now) if self.policy.enabled else None
        personal = [exclude] if exclude is not None and len(exclude) else []
        if self.policy.enabled:
            personal += [
                rows for rule in self.personal_rules if len(rows := rule.rows(customer, now))
            ]
        if caller:
            allowed, extra = self._caller(caller, allowed)
            personal += [extra] if len(extra) else []
        merged = None
        if len(personal) == 1:
            merged = personal[0]
        elif personal:  # a few short arrays: merged in Python, cheaper than numpy's unique
            union = set().union(*(part.tolist() for part in personal))
            merged = np.array(sorted(union), dtype=np.int64)
        return Filters(allowed, merged)

    def _allowed(self, customer: Customer, now: datetime) -> np.ndarray | None:
        minute = int(now.timestamp() // 60) if self._dated.any() else 0
        key = (minute, *(rule.key(customer) for rule in self.segment_rules))
        masks = self._masks
        if key in masks:
            masks.move_to_end(key)
            return masks[key]
        blocked = self.blocked_by(customer, now)
        allowed = None
        if blocked:
            any_blocked = np.logical_or.reduce([mask for mask in blocked.values()])
            allowed = np.flatnonzero(~any_blocked).astype(np.int32)
        masks[key] = allowed
        if len(masks) > self._masks_kept:
            masks.popitem(last=False)
        return allowed

    def blocked_by(self, customer: Customer, now: datetime) -> dict[str, np.ndarray]:
        """Each segment rule's blocked items (bool masks), built-in rules included; rules that
        block nothing are left out."""
        items = self.items
        masks: dict[str, np.ndarray] = {}
        if not items.listed.all():
            masks[WITHDRAWN] = ~items.listed
        if self._dated.any():
            moment = now.timestamp()
            with np.errstate(invalid="ignore"):
                early = items.available_from > moment
                late = items.available_until <= moment
            masks[UNAVAILABLE] = early | late
        for rule in self.segment_rules:
            # Several rules of one kind (a variant's on top of the base's, docs/POLICY.md) block
            # together under the kind's name.
            blocked = rule.blocked(customer)
            masks[rule.name] = masks[rule.name] | blocked if rule.name in masks else blocked
        return {name: mask for name, mask in masks.items() if mask.any()}

    def excluded_by(self, customer: Customer, now: datetime) -> dict[str, set[int]]:
        """Each personal rule's excluded rows, by rule name (several rules of one kind, such as
        contact limits per channel, count together)."""
        excluded: dict[str, set[int]] = {}
        for rule in self.personal_rules:
            excluded.setdefault(rule.name, set()).update(rule.rows(customer, now).tolist())
        return excluded

    def _caller(
        self, caller: CallerFilters, allowed: np.ndarray | None
    ) -> tuple[np.ndarray | None, np.ndarray]:
        items = self.items
        mask = np.ones(items.n, dtype=bool) if allowed is None else np.zeros(items.n, dtype=bool)
        if allowed is not None:
            mask[allowed] = True
        if caller.categories:
            mask &= items.category_mask(caller.categories)
        if caller.institutions:
            mask &= items.institution_mask(caller.institutions)
        if caller.only:
            only = np.zeros(items.n, dtype=bool)
            only[self.rows_of(caller.only)] = True
            mask &= only
        return np.flatnonzero(mask), self.rows_of(caller.exclude)

    def rows_of(self, product_ids: Sequence[str]) -> np.ndarray:
        rows = {self.items.row(product_id) for product_id in product_ids} - {None}
        return np.array(sorted(rows), dtype=np.int64)  # type: ignore[type-var]

    # --- after ranking ------------------------------------------------------------------------

    def fetch(self, limit: int) -> int:
        """How many to rank for a list of `limit`: the diversity window when caps are set."""
        diversity = self.policy.rules.diversity
        capped = self.policy.enabled and (
            diversity.max_per_category or diversity.max_per_institution
        )
        return limit * diversity.window if capped else limit

    def select(
        self, rows: np.ndarray, scores: np.ndarray, limit: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best `limit` of a ranked list (`fetch(limit)` long) within the diversity caps,
        walking it best first; when the caps leave the list short, the best of the products they
        skipped fill it."""
        diversity = self.policy.rules.diversity
        if not self.fetch(limit) > limit or len(rows) <= 1:
            return rows[:limit], scores[:limit]
        per_category = diversity.max_per_category or limit
        per_institution = diversity.max_per_institution or limit
        # Plain lists from here: a window is a few dozen rows, and each numpy call on so few
        # costs more than the Python that replaces it.
        category, institution = self._category_codes, self._institution_codes
        in_category = [0] * (len(self.items.category_names) + 1)  # by code + 1 (-1: unknown)
        in_institution = [0] * (len(self.items.institution_names) + 1)
        taken: list[int] = []
        skipped: list[int] = []
        for position, row in enumerate(rows.tolist()):
            c, i = category[row], institution[row]
            if in_category[c] < per_category and in_institution[i] < per_institution:
                taken.append(position)
                if len(taken) == limit:
                    break
                in_category[c] += 1
                in_institution[i] += 1
            else:
                skipped.append(position)
        if len(taken) < limit:
            taken = sorted(taken + skipped[: limit - len(taken)])
        elif taken[-1] == limit - 1:  # nothing skipped: the best `limit` as they were
            return rows[:limit], scores[:limit]
        return rows[taken], scores[taken]

    # --- explain=true -------------------------------------------------------------------------

    def explain(
        self,
        customer: Customer,
        now: datetime,
        caller: CallerFilters,
        exclude: np.ndarray | None,
        unfiltered: np.ndarray,
        chosen: np.ndarray,
    ) -> dict[str, object]:
        """Why each product the ranking alone would have listed (`unfiltered`, best first) is
        not in the served list (`chosen`): the rules that filtered it, `diversity` when a cap
        did, `below_the_limit` when products ranked above it filled the list."""
        items = self.items
        enabled = self.policy.enabled
        blocked = self.blocked_by(customer, now) if enabled else {}
        excluded = self.excluded_by(customer, now) if enabled else {}
        if caller:
            allowed, caller_excluded = self._caller(caller, None)
            blocked["caller_filters"] = np.ones(items.n, dtype=bool)
            blocked["caller_filters"][allowed] = False
            excluded["caller_exclude"] = set(caller_excluded.tolist())
        served = set(chosen.tolist())
        categories = [items.category[row] for row in chosen.tolist()]
        institutions = [items.institution[row] for row in chosen.tolist()]
        diversity = self.policy.rules.diversity
        filtered = []
        for rank, row in enumerate(unfiltered.tolist(), start=1):
            if row in served:
                continue
            rules = [name for name, mask in blocked.items() if mask[row]]
            rules += [name for name, rows in excluded.items() if row in rows]
            if not rules:
                capped = enabled and (
                    0 < diversity.max_per_category <= categories.count(items.category[row])
                    or 0
                    < diversity.max_per_institution
                    <= institutions.count(items.institution[row])
                )
                rules = ["diversity" if capped else "below_the_limit"]
            filtered.append({"id": items.ids[row], "rank_without_policy": rank, "rules": rules})
        return {
            "policy_version": self.version,
            "customer": customer.describe(),
            "blocked_counts": {name: int(mask.sum()) for name, mask in blocked.items()},
            "excluded": {
                name: sorted(items.ids[r] for r in rows) for name, rows in excluded.items()
            },
            "filtered": filtered,
        }
