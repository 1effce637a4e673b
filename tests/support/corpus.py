"""The corpus of invalid manifests in ``tests/manifests/invalid``: one file each, with a header

    # expect: <substring of the error naming the field>     (alternatives: "a | b")
    # xfail-local: <why>     optional: a known case local validation still accepts (a bug)
    # xfail-server: <why>    optional: a known case the API server still accepts (a bug)

Both ``tests/unit/test_manifests_rejected_locally.py`` and
``tests/integration/test_manifests_rejected.py`` read it, so a manifest is judged the same
by ``tuneline validate`` and by the API server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

INVALID_DIR = Path(__file__).resolve().parents[1] / "manifests" / "invalid"
_HEADER = re.compile(r"^#\s*(expect|xfail-local|xfail-server):\s*(.+?)\s*$")


@dataclass(frozen=True)
class InvalidCase:
    path: Path
    expect: tuple[str, ...]
    xfail_local: str | None
    xfail_server: str | None

    @property
    def id(self) -> str:
        return self.path.stem

    @property
    def text(self) -> str:
        return self.path.read_text()

    def document(self) -> dict:
        return yaml.safe_load(self.text)

    def matches(self, message: str) -> bool:
        return any(e in message for e in self.expect)


def invalid_cases() -> list[InvalidCase]:
    cases = []
    for path in sorted(INVALID_DIR.glob("*.yaml")):
        found: dict[str, str] = {}
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            m = _HEADER.match(line)
            if m:
                found[m.group(1)] = m.group(2)
        if "expect" not in found:
            raise ValueError(f"{path} has no '# expect: ...' header")
        cases.append(InvalidCase(path, tuple(e.strip() for e in found["expect"].split(" | ")),
                                 found.get("xfail-local"), found.get("xfail-server")))
    return cases
