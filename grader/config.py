"""
The instructor's grading config (TOML): which tests an assignment includes, their points
and visibility, and the limits. Every key is checked; a typo is an error, not a silent
default.

    [assignment]
    contract = true                     # only the homework's Part-1 functions (API.md)
    include = ["layers", "rnn_step_*"]  # test-name patterns or module names; default: all
    exclude = ["*_float32"]
    visibility = "visible"              # default of every test

    [limits]                            # defaults as on the command line
    time_per_test = 10                  # seconds
    budget = 120                        # seconds for the whole submission
    memory_mb = 2048
    processes = 32

    [tests.fc_gradients]
    points = 5
    visibility = "after_due_date"       # visible, hidden, after_due_date, after_published
"""
import fnmatch
try:
    import tomllib
except ImportError:   # Python < 3.11 (Gradescope's default image has 3.10)
    from grader import toml_subset as tomllib
from dataclasses import dataclass, field

from grader.report import VISIBILITIES


class ConfigError(Exception):
    pass


@dataclass
class Config:
    contract: bool = False
    include: list = field(default_factory=list)
    exclude: list = field(default_factory=list)
    visibility: str = "visible"
    limits: dict = field(default_factory=dict)
    tests: dict = field(default_factory=dict)   # name -> {'points': int, 'visibility': str}


SECTIONS = {"assignment": {"contract", "include", "exclude", "visibility"},
            "limits": {"time_per_test", "budget", "memory_mb", "processes"}, "tests": None}


def load(path, test_names):
    """The Config in the TOML file at `path`; ConfigError says what is wrong and where."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read the grading config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    where = lambda key: f"{path}: {key}"
    for section, value in data.items():
        if section not in SECTIONS:
            raise ConfigError(where(f"unknown section [{section}] (known: {', '.join(SECTIONS)})"))
        if not isinstance(value, dict):
            raise ConfigError(where(f"{section} must be a table"))
        known = SECTIONS[section]
        for key in value if known is not None else ():
            if key not in known:
                raise ConfigError(where(f"unknown key {section}.{key} (known: {', '.join(sorted(known))})"))
    assignment, limits, tests = (data.get(s, {}) for s in ("assignment", "limits", "tests"))
    config = Config()
    config.contract = _typed(where("assignment.contract"), assignment.get("contract", False), bool)
    for key in ("include", "exclude"):
        patterns = _typed(where(f"assignment.{key}"), assignment.get(key, []), list)
        for pattern in patterns:
            _typed(where(f"assignment.{key}"), pattern, str)
        setattr(config, key, patterns)
    config.visibility = _visibility(where("assignment.visibility"), assignment.get("visibility", "visible"))
    for key, value in limits.items():
        number = _typed(where(f"limits.{key}"), value, (int, float))
        if not number > 0:
            raise ConfigError(where(f"limits.{key} must be > 0, got {value}"))
        config.limits[key] = number
    for name, settings in tests.items():
        if name not in test_names:
            close = fnmatch.filter(test_names, f"*{name[:6]}*")[:3]
            raise ConfigError(where(f"[tests.{name}]: no such test"
                                    + (f" (did you mean {', '.join(close)}?)" if close else "")))
        if not isinstance(settings, dict) or set(settings) - {"points", "visibility"}:
            raise ConfigError(where(f"[tests.{name}] takes only points and visibility"))
        entry = {}
        if "points" in settings:
            points = _typed(where(f"tests.{name}.points"), settings["points"], int)
            if points < 0:
                raise ConfigError(where(f"tests.{name}.points must be >= 0"))
            entry["points"] = points
        if "visibility" in settings:
            entry["visibility"] = _visibility(where(f"tests.{name}.visibility"), settings["visibility"])
        config.tests[name] = entry
    return config


def _typed(where, value, types):
    if not isinstance(value, types) or (types is int and isinstance(value, bool)):
        names = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise ConfigError(f"{where} must be {names}, got {value!r}")
    return value


def _visibility(where, value):
    if value not in VISIBILITIES:
        raise ConfigError(f"{where} must be one of {', '.join(VISIBILITIES)}, got {value!r}")
    return value


def matches(test, patterns):
    """Whether a test's name or module matches one of the patterns."""
    return any(fnmatch.fnmatchcase(test.name, p) or p in (test.module, test.module + ".py")
               for p in patterns)
