"""One table of datatype pairs, for both sides of the one acceptance rule
(`changeover.domain.signature.accepts_datatype`): the gateway takes data sent as ``sent`` for
an input declared ``declared`` (cast to it) exactly when ``accepted``; and `compat` calls a
change of an input from ``sent`` (the champion's, what today's clients send) to ``declared``
(the candidate's) breaking exactly when not ``accepted``."""

from __future__ import annotations

# (sent, declared, accepted)
DATATYPE_PAIRS: list[tuple[str, str, bool]] = [
    # the same datatype
    ("FP32", "FP32", True),
    ("INT64", "INT64", True),
    ("BOOL", "BOOL", True),
    ("BYTES", "BYTES", True),
    # safe widenings within one kind of number: accepted, cast
    ("FP32", "FP64", True),
    ("FP16", "FP32", True),
    ("FP16", "FP64", True),
    ("INT32", "INT64", True),
    ("INT8", "INT32", True),
    ("UINT16", "UINT32", True),
    ("UINT8", "INT16", True),
    ("UINT32", "INT64", True),
    # narrowings: values would be rounded or wrapped
    ("FP64", "FP32", False),
    ("FP32", "FP16", False),
    ("INT64", "INT32", False),
    ("UINT64", "INT64", False),
    ("INT8", "UINT16", False),
    # another kind of number
    ("INT32", "FP64", False),
    ("INT64", "FP32", False),
    ("FP32", "INT64", False),
    # booleans and bytes are never cast
    ("BOOL", "INT32", False),
    ("INT32", "BOOL", False),
    ("BYTES", "FP32", False),
    ("FP32", "BYTES", False),
]
