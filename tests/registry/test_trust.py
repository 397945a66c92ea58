"""The registry's trust rules (registry/trust.py): what a push trusts, what it is refused for, and
what its event says."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from changeover.errors import UntrustedArtifact
from changeover.registry.trust import Trust, allow_listing_folder, code_trust, skops_trust

TREE = "sklearn.tree._tree.Tree"
NEG = "_operator.neg"


@pytest.mark.parametrize(
    ("runtime", "trust", "allow_listed", "expected"),
    [
        ("python", True, None, Trust(True, (), "trusted: whole folder (--trust by alice)", "--trust")),
        ("pickle", True, None, Trust(True, (), "trusted: whole file (--trust by alice)", "--trust")),
        ("python", False, "/srv/models", Trust(
            True, (), "trusted: folder allow-listed by CHANGEOVER_TRUSTED_FOLDERS (/srv/models)",
            "CHANGEOVER_TRUSTED_FOLDERS")),
        ("python", True, "/srv/models", Trust(True, (), "trusted: whole folder (--trust by alice)", "--trust")),
    ],
)
def test_code_is_trusted_whole_and_says_why(runtime: str, trust: bool, allow_listed: str | None,
                                            expected: Trust) -> None:
    assert code_trust(runtime, "m", trust=trust, actor="alice", allow_listed=allow_listed) == expected


@pytest.mark.parametrize(
    ("runtime", "allow_listed", "needles"),
    [
        ("python", None, ("m is a python-runtime folder", "code that runs inside the server",
                          "--trust only if you trust its author", "CHANGEOVER_TRUSTED_FOLDERS")),
        ("pickle", None, ("m is a pickle", "--trust only if you trust its author")),
        ("pickle", "/srv/models", ("m is a pickle",)),  # the allow-list is for python folders only
    ],
)
def test_code_without_trust_is_refused_saying_how_to_trust_it(runtime: str, allow_listed: str | None,
                                                              needles: tuple[str, ...]) -> None:
    with pytest.raises(UntrustedArtifact) as info:
        code_trust(runtime, "m", trust=False, actor="alice", allow_listed=allow_listed)
    assert all(n in str(info.value) for n in needles), str(info.value)


@pytest.mark.parametrize(
    ("untrusted", "trust", "flagged", "configured", "expected"),
    [
        ([], False, set(), set(), Trust()),
        ([], False, {TREE}, set(), Trust()),  # a named type the file does not hold is not recorded
        ([TREE], True, set(), set(), Trust(True, (), "trusted: whole file (--trust by alice)", "--trust")),
        ([TREE], False, {TREE}, set(), Trust(False, (TREE,), f"trusted types {TREE} (--trust-type by alice)",
                                             "--trust-type")),
        ([TREE], False, set(), {TREE}, Trust(False, (TREE,), f"trusted types {TREE} (CHANGEOVER_SKOPS_TRUSTED_TYPES)",
                                             "CHANGEOVER_SKOPS_TRUSTED_TYPES")),
        ([TREE, NEG], False, {NEG}, {TREE}, Trust(
            False, (NEG, TREE), f"trusted types {NEG} (--trust-type by alice); {TREE} (CHANGEOVER_SKOPS_TRUSTED_TYPES)",
            "--trust-type, CHANGEOVER_SKOPS_TRUSTED_TYPES")),
    ],
)
def test_skops_types_are_trusted_by_name(untrusted: list[str], trust: bool, flagged: set[str], configured: set[str],
                                         expected: Trust) -> None:
    assert skops_trust("m.skops", untrusted, trust=trust, flagged=flagged, configured=configured,
                       actor="alice") == expected


@pytest.mark.parametrize(
    ("flagged", "configured", "remaining"),
    [(set(), set(), [TREE, NEG]), ({TREE}, set(), [NEG]), (set(), {TREE}, [NEG]), ({NEG}, set(), [TREE])],
)
def test_skops_types_left_untrusted_are_named_with_the_flag_that_trusts_them(
        flagged: set[str], configured: set[str], remaining: list[str]) -> None:
    with pytest.raises(UntrustedArtifact) as info:
        skops_trust("m.skops", [TREE, NEG], trust=False, flagged=flagged, configured=configured, actor="alice")
    message = str(info.value)
    assert f"skops does not trust: {', '.join(remaining)};" in message
    assert all(f"--trust-type {t}" in message for t in remaining)
    assert all(t not in message for t in {TREE, NEG} - set(remaining))
    assert "pickle" not in message.lower()


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("/srv/models/ranker", "/srv/models"),
        ("/srv/models", "/srv/models"),
        ("/srv/models-evil/ranker", None),  # a prefix of the name is not the folder
        ("/srv", None),
        ("/home/alice/ranker", None),
        ("/opt/team/a/b", "/opt/team"),
    ],
)
def test_a_folder_is_allow_listed_only_inside_a_listed_folder(origin: str, expected: str | None) -> None:
    folders = [PurePosixPath("/srv/models"), PurePosixPath("/opt/team")]
    found = allow_listing_folder(PurePosixPath(origin), folders)
    assert (str(found) if found else None) == expected
