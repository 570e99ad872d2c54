"""The rules file: the shipped default loads; a bad file names the file, the line and the reason,
and start-up stops on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from finverse_reco import compose
from finverse_reco.policy import DEFAULT_RULES_FILE, Policy, PolicyFileError, RulesFile, load_rules
from finverse_reco.settings import Settings

GOOD = """\
version = "test-1"

[[rules]]
kind = "holdings"
repeatable_categories = ["insurance"]

[[rules]]
kind = "eligibility"
fail_closed_categories = ["credit_card"]

[rules.categories.mortgage]
min_age = 21

[[rules]]
kind = "suitability"
unknown_risk_profile = 2

[diversity]
max_per_category = 3
"""


def written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return path


def test_the_shipped_default_loads() -> None:
    rules = load_rules(DEFAULT_RULES_FILE)
    assert rules.version and [rule.kind for rule in rules.rules] == [
        "holdings",
        "applied",
        "contact_limit",
        "dismissed",
        "eligibility",
        "suitability",
    ]
    limit, dismissed = rules.rules[2], rules.rules[3]
    assert (limit.max_impressions, limit.days, limit.channel, limit.category) == (3, 7, None, None)
    assert dismissed.days == 30
    assert load_rules(None) == rules


def test_a_good_file_loads(tmp_path) -> None:
    rules = load_rules(written(tmp_path, GOOD))
    assert rules.version == "test-1" and rules.diversity.max_per_category == 3
    assert rules.rules[1].categories["mortgage"].min_age == 21


@pytest.mark.parametrize(
    ("change", "line", "words"),
    [
        # a TOML syntax error: the parser's own line
        (("max_per_category = 3", "max_per_category = = 3"), 19, "Invalid"),
        # a value of the wrong type in the second [[rules]] table
        (('fail_closed_categories = ["credit_card"]', "fail_closed_categories = 7"), 9, "tuple"),
        # an unknown rule kind
        (('kind = "suitability"', 'kind = "astrology"'), 15, "astrology"),
        # a value out of range in a nested table
        (("min_age = 21", "min_age = -4"), 12, "greater than or equal"),
        # a key the schema does not have
        (("max_per_category = 3", "max_per_category = 3\nmax_per_colour = 2"), 20, "Extra inputs"),
        # no version
        (('version = "test-1"', ""), 1, "version"),
    ],
)
def test_a_bad_file_names_the_file_line_and_reason(tmp_path, change, line, words) -> None:
    path = written(tmp_path, GOOD.replace(*change))
    with pytest.raises(PolicyFileError) as raised:
        load_rules(path)
    assert raised.value.path == path
    assert raised.value.line == line, str(raised.value)
    assert words in raised.value.reason
    assert str(path) in str(raised.value) and f"line {line}" in str(raised.value)


def test_a_missing_file_is_named(tmp_path) -> None:
    with pytest.raises(PolicyFileError, match=r"nowhere\.toml"):
        load_rules(tmp_path / "nowhere.toml")


def test_start_up_stops_on_a_bad_file(tmp_path) -> None:
    path = written(tmp_path, GOOD.replace("min_age = 21", 'min_age = "old"'))
    settings = Settings(policy_file=path, store_url=f"sqlite:///{tmp_path}/x.db")
    with pytest.raises(SystemExit) as stopped:
        compose.policy(settings)
    assert f"{path}, line 12" in str(stopped.value)
    assert "min_age" in str(stopped.value)


def test_the_policy_cannot_be_switched_off_in_production(tmp_path) -> None:
    with pytest.raises(ValueError, match="FINVERSE_POLICY_ENABLED"):
        Settings(environment="production", api_key="s3cret-key", policy_enabled=False)


def test_each_event_type_is_read_over_the_longest_window_its_rules_need() -> None:
    rules = load_rules(None)
    longer = RulesFile.model_validate(
        {
            "version": "windows",
            "rules": [
                *(rule.model_dump() for rule in rules.rules),
                {"kind": "contact_limit", "max_impressions": 1, "days": 14, "channel": "email"},
            ],
        }
    )
    days = {kind.value: window.days for kind, window in Policy(longer).activity_windows.items()}
    assert days == {"application_submit": 365, "dismiss": 30, "impression": 14, "product_click": 14}
