"""Settings as dataclass fields: metadata, checks and the flat view.

A leaf field carries its help text, kind, flag name (None: not a flag),
choices, whether it may change when a run resumes (runtime) and its check
(positive/nonnegative/fraction). `flatten`/`unflatten` give the flat view
(flag name -> value) that flags.json and encoder_config.json hold.
"""

import dataclasses
import math

# Metadata keys: help, kind (string/integer/float/bool/enum/grid/ints/strings),
# flag (its name; None: not a flag), choices, runtime (may change when a run
# resumes), check (positive/nonnegative/fraction).


def leaf(default, kind, help_text, *, flag=True, choices=None,
          runtime=False, check=None):
  metadata = dict(help=help_text, kind=kind, flag=flag, choices=choices,
                  runtime=runtime, check=check)
  return dataclasses.field(default=default, metadata=metadata)


def nested(cls, help_text="", prefix="", key_prefix=None):
  """A nested config field.

  prefix goes before the flag names of its leaves; key_prefix (default:
  prefix) before the flat names of its leaves that are not flags, so that
  they cannot clash with the outer config's.
  """
  return dataclasses.field(
      default_factory=cls,
      metadata=dict(help=help_text, nested=True, prefix=prefix,
                    key_prefix=prefix if key_prefix is None else key_prefix))


def flag_name(field, prefix=""):
  name = field.metadata.get("flag", True)
  if name is None:
    return None
  return prefix + (field.name if name is True else name)


def leaves(cls, prefix="", key_prefix=""):
  """(field path, field, flat name) of every leaf of `cls`, in order."""
  for field in dataclasses.fields(cls):
    meta = field.metadata
    if meta.get("nested"):
      for path, leaf, key in leaves(field.default_factory,
                                     prefix + meta["prefix"],
                                     key_prefix + meta["key_prefix"]):
        yield (field.name,) + path, leaf, key
    else:
      yield ((field.name,), field,
             flag_name(field, prefix) or key_prefix + field.name)


def get(config, path):
  for name in path:
    config = getattr(config, name)
  return config


def _check_value(name, value, kind, check, choices):
  """ValueError naming `name` when `value` breaks the field's rule."""
  if value is None:
    return
  if kind == "enum" and value not in choices:
    raise ValueError(f"{name} must be one of {', '.join(choices)}, got "
                     f"{value!r}.")
  if kind == "integer" and (not isinstance(value, int)
                            or isinstance(value, bool)):
    raise ValueError(f"{name} must be an integer, got {value!r}.")
  if kind == "float" and (not isinstance(value, (int, float))
                          or isinstance(value, bool)
                          or not math.isfinite(value)):
    raise ValueError(f"{name} must be a finite number, got {value!r}.")
  if check == "positive" and not value > 0:
    raise ValueError(f"{name} must be positive, got {value!r}.")
  if check == "nonnegative" and not value >= 0:
    raise ValueError(f"{name} must be >= 0, got {value!r}.")
  if check == "fraction" and not 0.0 < value < 1.0:
    raise ValueError(f"{name} must be in (0, 1), got {value!r}.")


def check_fields(config, prefix=""):
  """Checks every leaf of `config` (and nested configs) against its rule."""
  for path, field, key in leaves(type(config), prefix, prefix):
    meta = field.metadata
    _check_value(key, get(config, path), meta.get("kind"), meta.get("check"),
                 meta.get("choices"))


def flatten(config):
  """{flat name: value} over the leaves of a (nested) config.

  A leaf's flat name is its flag name, or (not a flag) its field name after
  the key prefixes of the configs it is nested in.
  """
  values = {}
  for path, _, key in leaves(type(config)):
    if key in values:
      raise ValueError(f"{type(config).__name__}: {key!r} appears twice in "
                       "the flat view.")
    value = get(config, path)
    values[key] = list(value) if isinstance(value, tuple) else value
  return values


def unflatten(cls, values):
  """The inverse of `flatten`: a config of type `cls`; unknown keys ignored."""
  kwargs = {}
  for path, _, key in leaves(cls):
    if key in values:
      value = values[key]
      node = kwargs
      for name in path[:-1]:
        node = node.setdefault(name, {})
      node[path[-1]] = tuple(value) if isinstance(value, list) else value
  return _build(cls, kwargs)


def _build(cls, kwargs):
  nested = {f.name: f.default_factory for f in dataclasses.fields(cls)
            if f.metadata.get("nested")}
  return cls(**{name: _build(nested[name], value) if name in nested else value
                for name, value in kwargs.items()})


def replace(config, **flat):
  """A copy of `config` with flat (flag-named) settings replaced.

  E.g. replace(train_config, seed=1, width=1.0, num_patches=4).

  Raises:
    ValueError: a name that is not one of the config's settings.
  """
  values = flatten(config)
  unknown = set(flat) - set(values)
  if unknown:
    raise ValueError(f"Unknown {type(config).__name__} settings "
                     f"{sorted(unknown)}.")
  values.update(flat)
  return unflatten(type(config), values)


def runtime_names(cls):
  """Flat names of the fields that may change when a run resumes."""
  return tuple(key for _, field, key in leaves(cls)
               if field.metadata.get("runtime"))
