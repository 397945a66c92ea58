"""The README's Security section names only settings that exist, with their true defaults."""

from __future__ import annotations

import re
from pathlib import Path

from changeover.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("### Security\n")
    return text[start:text.index("\n### ", start + 1)]


def test_every_setting_the_security_section_names_exists() -> None:
    named = set(re.findall(r"CHANGEOVER_([A-Z_]+)", section()))
    assert {"TOKEN", "FEEDBACK_TOKEN", "DATA_FOLDERS", "MAX_JSON_BYTES", "TRUSTED_FOLDERS"} <= named
    assert sorted(n for n in named if n.lower() not in Settings.model_fields) == []


def test_the_limits_it_states_are_the_defaults() -> None:
    text = " ".join(section().split())
    for name, shown in [("max_json_bytes", "1 MiB"), ("max_artifact_bytes", "4 GiB"), ("max_data_bytes", "1 GiB"),
                        ("max_body_bytes", "8 MiB")]:
        value = Settings.model_fields[name].default
        unit = 1024**3 if shown.endswith("GiB") else 1024**2
        assert f"CHANGEOVER_{name.upper()}` ({shown})" in text and value == int(shown.split()[0]) * unit, name
    assert "default 1%" in text and Settings.model_fields["record_rate"].default == 0.01
