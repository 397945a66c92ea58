"""An event's dedup key is the same in every process: a controller that takes over after a
crash must not write a decision's event twice because Python salts str hashes per process."""

from __future__ import annotations

import os
import subprocess
import sys

from changeover.control.rollouts import stable_digest


def test_the_digest_is_the_same_in_processes_with_different_hash_seeds() -> None:
    message = "step 1 (5%) passed: error_rate within tolerance"
    code = f"from changeover.control.rollouts import stable_digest; print(stable_digest({message!r}))"
    got = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                          capture_output=True, text=True, check=True).stdout.strip() for seed in ("1", "2", "3")}
    assert got == {stable_digest(message)}
    assert stable_digest(message) != stable_digest(message + ".")
