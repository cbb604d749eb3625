"""The errors rt-blackbox raises on purpose: one tree, so the CLIs can turn each into one line and exit 2.

    BlackboxError
    ├── StoreError          the store directory: not a store, wrong version, locked, unwritable
    │   └── StoreLockedError
    ├── InputError          an input path or file that cannot be read as asked
    ├── ConfigError         options, presets, patterns, thresholds
    └── DecodeError         a frame or record that cannot be decoded (kept raw, never dropped)
"""


class BlackboxError(Exception):
    """Base of every error a person is meant to read; ``str(err)`` is one actionable line."""


class StoreError(BlackboxError):
    pass


class StoreLockedError(StoreError):
    pass


class InputError(BlackboxError):
    pass


class ConfigError(BlackboxError):
    pass


class DecodeError(BlackboxError):
    pass
