"""Reading the rules file: TOML, validated against `RulesFile`. A bad file raises `PolicyFileError`
naming the file, the line and the reason, and start-up stops on it."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from finverse_reco.policy.rules import RulesFile

DEFAULT_RULES_FILE = Path(__file__).with_name("default_rules.toml")
_TOML_LINE = re.compile(r"at line (\d+)")
_HEADER = re.compile(r"^\s*\[")


class PolicyFileError(ValueError):
    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"rules file {path}, line {line}: {reason}")
        self.path, self.line, self.reason = path, line, reason


def load_rules(path: Path | None = None) -> RulesFile:
    """The rules file at `path` (default: the shipped `default_rules.toml`)."""
    path = Path(path or DEFAULT_RULES_FILE)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyFileError(path, 0, f"cannot be read: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LINE.search(str(exc))
        raise PolicyFileError(path, int(found.group(1)) if found else 0, str(exc)) from None
    try:
        return RulesFile.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"]) or "file"
        loc = error["loc"]
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, "kind")  # the rule's kind is what is wrong: point at its line
        line = line_of(text.splitlines(), loc)
        raise PolicyFileError(path, line, f"{where}: {error['msg']}") from None


def line_of(lines: Sequence[str], loc: Sequence[str | int]) -> int:
    """The 1-based line a validation error's location points at: the key's own line where it is
    written, else the table it belongs to. Follows `[table]`, `[[array]]` headers and keys."""
    start, end = 0, len(lines)
    found = 1  # a key the file lacks: the file as a whole, from its first line
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = str(parts[i])
        following = parts[i + 1] if i + 1 < len(parts) else None
        if isinstance(following, int):  # the n-th [[part]]
            headers = [n for n in range(start, end) if _is_header(lines[n], part, array=True)]
            if following >= len(headers):
                break
            start, found = headers[following], headers[following] + 1
            end = _next_header(lines, start)
            i += 2
            continue
        key = next((n for n in range(start, end) if _is_key(lines[n], part)), None)
        if key is not None:
            return key + 1
        header = next((n for n in range(start, len(lines)) if _is_header(lines[n], part)), None)
        if header is None:
            i += 1  # a discriminator tag or a key the file does not write: keep looking
            continue
        start, found, end = header, header + 1, _next_header(lines, header)
        i += 1
    return found


def _is_key(line: str, key: str) -> bool:
    return re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", line) is not None


def _is_header(line: str, name: str, *, array: bool = False) -> bool:
    brackets = (r"\[\[", r"\]\]") if array else (r"\[", r"\]")
    pattern = rf"^\s*{brackets[0]}\s*(?:[\w\"-]+\.)*\"?{re.escape(name)}\"?\s*{brackets[1]}"
    return re.match(pattern, line) is not None


def _next_header(lines: Sequence[str], after: int) -> int:
    return next((n for n in range(after + 1, len(lines)) if _HEADER.match(lines[n])), len(lines))
