"""Policy variants: a variant is named by a plain file name in its directory, and the arm's policy
is the base's rules and the variant's together, so a variant can tighten and never relax (an item
passes only when both files let it, the stricter diversity cap holds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from finverse_reco.customers import KycStatus
from finverse_reco.events import FeedbackEvent
from finverse_reco.policy import (
    Customer,
    ItemFacts,
    Policy,
    PolicyFileError,
    PolicyVariants,
    RulesFile,
    check_variant_name,
    tightened,
)
from finverse_reco.products import Product

NOW = datetime.now(UTC)
CATEGORIES = ("credit_card", "mortgage", "savings_account")
# p0: a credit card from 18, p1: a mortgage from 21, p2, p3: savings accounts (no requirement).
PRODUCTS = [
    Product(id="p0", name="Card", category="credit_card", institution="A", min_age=18),
    Product(id="p1", name="Home", category="mortgage", institution="A", min_age=21),
    Product(id="p2", name="Save", category="savings_account", institution="B"),
    Product(id="p3", name="Save+", category="savings_account", institution="B"),
]
BASE = RulesFile.model_validate(
    {
        "version": "base-1",
        "rules": [
            {"kind": "eligibility", "fail_closed_categories": ["mortgage"]},
            {"kind": "applied", "lookback_days": 30},
        ],
        "diversity": {"max_per_category": 3, "max_per_institution": 0, "window": 2},
    }
)
# Cards from 25 and only for verified customers, whatever the base says.
STRICT = RulesFile.model_validate(
    {
        "version": "cards-25",
        "rules": [
            {
                "kind": "eligibility",
                "fail_closed_categories": ["credit_card"],
                "categories": {"credit_card": {"min_age": 25, "required_kyc": "verified"}},
            },
            {"kind": "contact_limit", "max_impressions": 2, "days": 14},
        ],
        "diversity": {"max_per_category": 0, "max_per_institution": 2, "window": 3},
    }
)
# "Relaxes": no rule at all, no cap.
LOOSE = RulesFile.model_validate({"version": "anything-goes"})


def facts() -> ItemFacts:
    return ItemFacts.build(
        [p.id for p in PRODUCTS],
        np.array([CATEGORIES.index(p.category) for p in PRODUCTS]),
        CATEGORIES,
        np.array([0, 0, 1, 1]),
        ("A", "B"),
        {p.id: p for p in PRODUCTS},
    )


def served(rules: RulesFile, customer: Customer) -> set[str]:
    bound = Policy(rules).bind(facts())
    filters = bound.filters(customer, NOW)
    allowed = range(len(PRODUCTS)) if filters.allowed is None else filters.allowed.tolist()
    excluded = set() if filters.exclude is None else set(filters.exclude.tolist())
    return {PRODUCTS[row].id for row in allowed if row not in excluded}


@pytest.mark.parametrize(
    "name", ["strict.toml", "cards-25.toml", "v2_strict.rules.toml", "A.toml", "x..toml"]
)
def test_a_variant_is_a_plain_rules_file_name(name) -> None:
    assert check_variant_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "../x.toml",
        "..",
        "sub/strict.toml",
        "/etc/finverse/rules.toml",
        "..\\strict.toml",
        ".hidden.toml",
        "strict",
        "experiments.json",
        "strict.toml\x00.json",
        "",
    ],
)
def test_paths_and_other_files_are_refused(name) -> None:
    with pytest.raises(ValueError, match="file's name"):
        check_variant_name(name)


def test_the_arm_policy_has_both_files_rules_and_both_versions() -> None:
    both = tightened(BASE, STRICT)
    assert both.version == "base-1+cards-25"
    assert both.rules == (*BASE.rules, *STRICT.rules)
    # The stricter cap of each kind (0 is none, the loosest), the wider window.
    assert (
        both.diversity.max_per_category,
        both.diversity.max_per_institution,
        both.diversity.window,
    ) == (3, 2, 3)
    assert Policy(both).version == "base-1+cards-25"
    # The variant's longer contact window is read; the base's applications still are.
    windows = {kind.value: back.days for kind, back in Policy(both).activity_windows.items()}
    assert windows == {"application_submit": 30, "impression": 14, "product_click": 14}


def test_an_item_passes_only_when_both_files_let_it() -> None:
    young = Customer(user_id="u", age=22, kyc_status=KycStatus.VERIFIED)
    unverified = Customer(user_id="u", age=40, kyc_status=KycStatus.PENDING)
    anonymous = Customer.anonymous()
    # The base lets a verified 22-year-old have the card and the mortgage; the variant not the card.
    assert served(BASE, young) == {"p0", "p1", "p2", "p3"}
    assert served(tightened(BASE, STRICT), young) == {"p1", "p2", "p3"}
    assert served(tightened(BASE, STRICT), unverified) == {"p1", "p2", "p3"}
    # Unknown age: the base fails the mortgage closed, the variant the card; together both.
    assert served(BASE, anonymous) == {"p0", "p2", "p3"}
    assert served(tightened(BASE, STRICT), anonymous) == {"p2", "p3"}
    # Two rules of one kind block together under its name (explain's blocked counts).
    bound = Policy(tightened(BASE, STRICT)).bind(facts())
    blocked = bound.blocked_by(anonymous, NOW)
    assert set(blocked) == {"eligibility"} and blocked["eligibility"].tolist() == [
        True,
        True,
        False,
        False,
    ]


def test_a_variant_that_relaxes_cannot_show_what_the_base_forbids() -> None:
    loose = tightened(BASE, LOOSE)
    assert loose.version == "base-1+anything-goes" and loose.rules == BASE.rules
    caps = (loose.diversity.max_per_category, loose.diversity.max_per_institution)
    assert caps == (BASE.diversity.max_per_category, BASE.diversity.max_per_institution)
    for customer in (
        Customer.anonymous(),
        Customer(user_id="u", age=19, kyc_status=KycStatus.VERIFIED),
    ):
        assert served(loose, customer) == served(BASE, customer)
    assert "p1" not in served(loose, Customer.anonymous())


def test_each_rule_reads_only_its_own_window_of_what_was_read() -> None:
    """A variant that reads applications further back must not lengthen the base's `applied`
    rule for the arm: it still counts its own 30 days."""
    longer = RulesFile.model_validate(
        {"version": "v", "rules": [{"kind": "applied", "lookback_days": 90}]}
    )

    def applied(days_ago: float, product: str) -> FeedbackEvent:
        at = (NOW - timedelta(days=days_ago)).timestamp()
        return FeedbackEvent(None, "u", "application_submit", at, (product,))

    # Unknown age: the mortgage is out (fail closed); p2 applied for 10 days ago, p3 60 days ago.
    customer = Customer(user_id="u", activity=(applied(10, "p2"), applied(60, "p3")))
    assert served(BASE, customer) == {"p0", "p3"}
    assert served(tightened(BASE, longer), customer) == {"p0"}


def write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(text)


def test_variants_load_from_their_directory_only(tmp_path) -> None:
    write(tmp_path, "strict.toml", 'version = "strict-1"\n[diversity]\nmax_per_category = 1\n')
    write(tmp_path, "broken.toml", 'version = "b"\n[[rules]]\nkind = "nonsense"\n')
    write(tmp_path, "bad-toml.toml", "version = \n")
    variants = PolicyVariants(Policy(BASE), tmp_path)
    policy = variants.load("strict.toml")
    assert policy.version == "base-1+strict-1" and policy.rules.diversity.max_per_category == 1
    with pytest.raises(PolicyFileError, match=r"missing\.toml.*cannot be read"):
        variants.load("missing.toml")
    with pytest.raises(PolicyFileError, match=r"broken\.toml, line 3: rules\.0"):
        variants.load("broken.toml")
    with pytest.raises(PolicyFileError, match=r"bad-toml\.toml, line 1"):
        variants.load("bad-toml.toml")
    outside = tmp_path.parent / "outside.toml"
    outside.write_text('version = "o"\n')
    with pytest.raises(PolicyFileError, match="no path"):
        variants.load("../outside.toml")


def test_a_variant_of_a_switched_off_policy_stays_off(tmp_path) -> None:
    write(tmp_path, "strict.toml", 'version = "strict-1"\n')
    variant = PolicyVariants(Policy(BASE, enabled=False), tmp_path).load("strict.toml")
    assert not variant.enabled and variant.version == "off"
