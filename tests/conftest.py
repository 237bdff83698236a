"""Shared by every test file.

- Hypothesis runs derandomized and without a replay database: every run of `make test` draws the same examples,
  and no failure found once is replayed in a later run from a file left behind (a fresh clone and a used one test
  the same thing).
- The fixtures give the one tiny CNN (`_helpers.cnn`) and small digits loaders; `_helpers.assert_same` is the one
  bit-exact state comparison."""
import pytest
from hypothesis import settings

from cyclr.data import digits
from _helpers import cnn

settings.register_profile('cyclr', derandomize=True, database=None, deadline=None, print_blob=True)
settings.load_profile('cyclr')


@pytest.fixture
def tiny_cnn():
    "The tiny seeded CNN for 8x8 digits (BatchNorm, 3 layer groups by split_by_children(3))."
    return cnn(seed=0)


@pytest.fixture
def small_digits():
    "Digits loaders with 64 training items in batches of 32, the same on every run."
    return digits(bs=32, n_train=64)
