"""absl flags derived from the configs: one flag per flag-named leaf."""

from audio_perm.config.fields import flag_name
from audio_perm.config.fields import flatten
from audio_perm.config.fields import leaves
from audio_perm.config.fields import unflatten

# ------------------------------------------------------------------- flags


def define_flags(cls, flag_values=None, *, optional=False, help_prefix="",
                 exclude=()):
  """Defines one absl flag per flag-named leaf of `cls` (recursively).

  Args:
    cls: a config dataclass.
    flag_values: absl FlagValues (default: absl.flags.FLAGS).
    optional: every flag defaults to None ("not given"): for overrides such as
      eval.py's architecture flags.
    help_prefix: put before every help text.
    exclude: flag names not to define.

  Returns:
    The flag names defined.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS if flag_values is None else flag_values
  definers = {"enum": flags.DEFINE_enum, "string": flags.DEFINE_string,
              "integer": flags.DEFINE_integer, "float": flags.DEFINE_float,
              "bool": flags.DEFINE_bool, "grid": flags.DEFINE_list,
              "ints": flags.DEFINE_list, "strings": flags.DEFINE_list}
  names = []
  for _, field, name in leaves(cls):
    meta = field.metadata
    if flag_name(field) is None or name in exclude:
      continue
    default = None if optional else field.default
    if meta["kind"] in ("grid", "ints", "strings") and default is not None:
      default = [str(v) for v in default]
    args = (name, default) + ((list(meta["choices"]),)
                              if meta["kind"] == "enum" else ())
    definers[meta["kind"]](*args, help_prefix + meta["help"],
                           flag_values=flag_values)
    names.append(name)
  return names


def _parse_list(name, kind, values):
  values = [v.strip() for v in values if v.strip()]
  if kind == "strings":
    return tuple(values)
  try:
    ints = tuple(int(v) for v in values)
  except ValueError:
    ints = None
  if kind == "grid" and (ints is None or len(ints) != 2):
    raise ValueError(f"--{name} must be two integers rows,cols, got "
                     f"{','.join(values)!r}.")
  if ints is None:
    raise ValueError(f"--{name}={','.join(values)} must be a comma list of "
                     "integers.")
  return ints


def flag_overrides(cls, flag_values=None, *, only_present=False):
  """{flat name: value} of the parsed flags of `cls`'s leaves.

  Args:
    cls: a config dataclass whose flags `define_flags` defined.
    flag_values: absl FlagValues (default: absl.flags.FLAGS).
    only_present: only flags with a value (those defined with optional=True
      default to None).

  Raises:
    ValueError: a malformed list flag (--grid, --num_labeled).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS if flag_values is None else flag_values
  values = {}
  for _, field, name in leaves(cls):
    if flag_name(field) is None or name not in flag_values:
      continue
    value = flag_values[name].value
    if only_present and value is None:
      continue
    if field.metadata["kind"] in ("grid", "ints", "strings") and (
        value is not None):
      value = _parse_list(name, field.metadata["kind"], value)
    values[name] = value
  return values


def from_flags(cls, flag_values=None, base=None):
  """A `cls` config from the parsed flags (over `base`'s other settings)."""
  values = flatten(base) if base is not None else {}
  values.update(flag_overrides(cls, flag_values))
  return unflatten(cls, values)
