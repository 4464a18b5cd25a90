"""The Hypothesis settings every generated test runs under, whichever road runs the suite.

Hypothesis loads its own `ci` profile (derandomize=True: the same examples on every run) when it finds a CI
variable in the environment (`CI`, `GITHUB_ACTIONS=true` and others, though not Jenkins'). Left to that, the GitHub
workflows would draw the same examples forever, while `make test` on a laptop or the Jenkinsfile would draw new
ones each run, so a disagreement could show on one road and never on another. tests/conftest.py loads PROFILE
instead, on every road: new examples each run (the Arrow body's integer SPEND bug of 2026-11-27 was found that
way), no example database written into the checkout, no deadline (the generated tests post to a service whose
timing depends on the machine), and a failure printing the `@reproduce_failure` blob that replays it.
`pytest --hypothesis-seed=N` draws the examples of seed N (a failing test prints its run's seed), and
`--hypothesis-profile=ci` Hypothesis' fixed ones (it then ignores a seed).
"""

from __future__ import annotations

from hypothesis import settings

PROFILE = "retail"

# Built on Hypothesis' defaults, not on the profile loaded when this runs: under a CI variable that is `ci`, whose
# suppressed too_slow a profile built on it would keep.
settings.register_profile(PROFILE, parent=settings.get_profile("default"), derandomize=False, database=None,
                          deadline=None, print_blob=True)


def load() -> None:
    settings.load_profile(PROFILE)
