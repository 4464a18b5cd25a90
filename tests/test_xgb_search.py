"""The XGBoost search's sampling of its grid."""

from __future__ import annotations

from ml.xgb_search import SPACE, _sample


def test_trials_are_distinct_points_of_the_grid():
    points = _sample(SPACE, 6, seed=7)
    assert len(points) == 6 and len({tuple(sorted(p.items())) for p in points}) == 6
    assert all(p[k] in SPACE[k] for p in points for k in SPACE)
    assert points == _sample(SPACE, 6, seed=7), "the same seed draws the same trials"


def test_asking_for_more_trials_than_the_grid_holds_returns_the_grid_once():
    """This once looped forever: the sampler kept drawing until it had `trials` distinct points."""
    space = {"max_depth": (4, 6), "learning_rate": (0.1, 0.3)}
    points = _sample(space, 50, seed=1)
    assert sorted(tuple(sorted(p.items())) for p in points) == sorted(
        (("learning_rate", lr), ("max_depth", d)) for d in (4, 6) for lr in (0.1, 0.3)
    )
