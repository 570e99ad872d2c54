"""Policy variants, the policy an experiment arm may serve: a rules file that can only tighten the
base rules, never relax them (docs/POLICY.md, "Variants").

A variant is named by a file name in one configured directory (`FINVERSE_POLICY_VARIANTS_DIR`),
never by a path, so that whoever may start an experiment cannot make the service read any other
file. The arm's effective rules are the base's and the variant's together: every rule of both
applies (a product is served only when both files allow it), and where both set a diversity cap
the stricter one holds. Its version names both: `"<base version>+<variant version>"`.
"""

from __future__ import annotations

import re
from pathlib import Path

from finverse_reco.policy.loading import PolicyFileError, load_rules
from finverse_reco.policy.rules import Diversity, RulesFile
from finverse_reco.policy.step import Policy

# A file name in the variants directory: no separator, no leading dot (so neither `..` nor a
# hidden file), and a rules file's suffix, so that no other file there can be named.
VARIANT_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,122}\.toml")


def check_variant_name(name: str) -> str:
    """`name` if it is a variant's file name; ValueError with the reason otherwise."""
    if VARIANT_FILE_NAME.fullmatch(name) is None:
        raise ValueError(
            "a policy variant is a rules file's name in FINVERSE_POLICY_VARIANTS_DIR: letters, "
            "digits, '_', '-' and '.', not starting with '.', ending in '.toml' (no path)"
        )
    return name


def tightened(base: RulesFile, variant: RulesFile) -> RulesFile:
    """The base rules with the variant's on top: every rule of both, the stricter of each
    diversity cap (0, no cap, is the loosest) and the wider window (the caps then hold over more
    of the ranking before the list is filled from what they skipped)."""
    ours, theirs = base.diversity, variant.diversity
    # Built without validation: both files were validated, and the joined version may exceed
    # the length one file's version is allowed.
    return RulesFile.model_construct(
        version=f"{base.version}+{variant.version}",
        rules=(*base.rules, *variant.rules),
        diversity=Diversity.model_construct(
            max_per_category=_stricter_cap(ours.max_per_category, theirs.max_per_category),
            max_per_institution=_stricter_cap(ours.max_per_institution, theirs.max_per_institution),
            window=max(ours.window, theirs.window),
        ),
    )


def _stricter_cap(one: int, other: int) -> int:
    caps = [cap for cap in (one, other) if cap > 0]
    return min(caps) if caps else 0


class PolicyVariants:
    """The variants an experiment may name: rules files in `directory`, each served as the base
    policy tightened by it."""

    def __init__(self, base: Policy, directory: Path) -> None:
        self.base = base
        self.directory = Path(directory)

    def path_of(self, name: str) -> Path:
        """The variant's file (ValueError for a name that is not a plain file name)."""
        return self.directory / check_variant_name(name)

    def load(self, name: str) -> Policy:
        """The base policy tightened by the variant `name`. Raises PolicyFileError naming the
        file, the line and the reason when it cannot be read or is not a valid rules file."""
        try:
            path = self.path_of(name)
        except ValueError as exc:
            raise PolicyFileError(Path(name), 0, str(exc)) from None
        variant = load_rules(path)
        return Policy(tightened(self.base.rules, variant), enabled=self.base.enabled)
