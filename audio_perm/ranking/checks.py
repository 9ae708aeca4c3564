"""Argument validation for audio_perm.ranking: every rule in one place.

Each check raises ValueError naming the bad value, and returns the value in
the form the ops use (a Python float or int) where it converts one. The
tuples of allowed options are the package's public DIRECTIONS,
REGULARIZATIONS, NOISES and TIES.
"""

import math

DIRECTIONS = ("ASCENDING", "DESCENDING")
REGULARIZATIONS = ("l2", "kl")
NOISES = ("normal", "gumbel")
TIES = ("ordinal", "average")


def check_direction(direction):
  if direction not in DIRECTIONS:
    raise ValueError(
        f"direction must be one of {DIRECTIONS}, got {direction!r}.")


def check_regularization(regularization):
  if regularization not in REGULARIZATIONS:
    raise ValueError(
        f"regularization must be one of {REGULARIZATIONS}, got "
        f"{regularization!r}.")


def check_strength(regularization_strength):
  """Returns the strength as a Python float, or raises ValueError."""
  try:
    strength = float(regularization_strength)
  except (TypeError, ValueError):
    raise ValueError(
        "regularization_strength must be a positive Python number, got "
        f"{regularization_strength!r}.") from None
  if not (strength > 0.0 and math.isfinite(strength)):
    raise ValueError(
        "regularization_strength must be positive and finite, got "
        f"{regularization_strength!r}; small values approach hard ranks, "
        "large values the mean rank.")
  return strength


def check_soft_args(direction, regularization, regularization_strength):
  """Validates soft_rank/soft_sort's options; returns the strength (float)."""
  check_direction(direction)
  check_regularization(regularization)
  return check_strength(regularization_strength)


def check_noise(noise):
  if noise not in NOISES:
    raise ValueError(f"noise must be one of {NOISES}, got {noise!r}.")


def check_ties(ties):
  if ties not in TIES:
    raise ValueError(f"ties must be one of {TIES}, got {ties!r}.")


def check_num_samples(num_samples):
  """Returns num_samples as a Python int >= 1, or raises ValueError."""
  try:
    ok = (not isinstance(num_samples, bool) and
          int(num_samples) == num_samples and int(num_samples) >= 1)
  except (TypeError, ValueError):
    ok = False
  if not ok:
    raise ValueError(
        f"num_samples must be a positive integer, got {num_samples!r}.")
  return int(num_samples)


def check_sigma(sigma):
  """Returns the noise scale as a positive Python float, or raises."""
  try:
    value = float(sigma)
  except (TypeError, ValueError):
    raise ValueError(
        f"sigma must be a positive Python number, got {sigma!r}.") from None
  if not (value > 0.0 and math.isfinite(value)):
    raise ValueError(f"sigma must be positive and finite, got {sigma!r}.")
  return value


def check_perturbed_args(direction, noise, num_samples, sigma):
  """Validates the perturbed ops' options; returns (num_samples, sigma)."""
  check_direction(direction)
  check_noise(noise)
  return check_num_samples(num_samples), check_sigma(sigma)


def check_python_seed(seed):
  """A seed a Keras object can store in its config: None or a Python int."""
  if seed is not None and (isinstance(seed, bool) or
                           not isinstance(seed, int)):
    raise ValueError(f"seed must be None or a Python int, got {seed!r}.")
