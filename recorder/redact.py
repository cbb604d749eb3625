"""Secret scrubbing for everything the recorder keeps: JWTs, Supabase keys, apikey/token/password fields.

Pure functions, no I/O; always applied before the first byte reaches disk (design.md, "Secrets promise").
"""

from __future__ import annotations

import base64
import functools
import json
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

import polars as pl

__all__ = [
    "JWT_KEPT_CLAIMS",
    "JWT_PATTERN",
    "REDACTED",
    "SB_KEY_PATTERN",
    "might_contain_secret",
    "redact_bytes",
    "redact_expr",
    "redact_headers",
    "redact_json_obj",
    "redact_text",
    "redact_url",
]

REDACTED = "REDACTED"

# What a diagnostician needs from a token ("expired?", "anon or service_role?", "which project?").
# Everything else (sub, email, session_id, app_metadata, ...) and the signature are dropped.
JWT_KEPT_CLAIMS = frozenset({"exp", "iat", "role", "iss", "ref", "aud"})

# Stands for a JWT-shaped token whose header or payload is not base64url JSON, or that has more
# than three segments. Keeps three segments: redacting it again gives it back.
_UNREADABLE_JWT = f"eyJ{REDACTED}.{REDACTED}.{REDACTED}"


def _ci(word: str) -> str:
    """`token` -> `[Tt][Oo][Kk][Ee][Nn]`: ASCII-only case folding that Python re and Rust regex share.

    `(?i)` is avoided on purpose: both engines fold some non-ASCII letters (the Kelvin sign matches
    `k`) and not in exactly the same way.
    """
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isascii() and c.isalpha() else re.escape(c) for c in word)


# Every pattern below is written once and compiled by both Python `re` and polars' Rust regex, so
# it sticks to the syntax they agree on: explicit ASCII classes, no \w \s \b, no (?i), no
# lookaround, no backreferences. `.` means "any character but \n" in both.
_SEG = r"[A-Za-z0-9_-]*"
# The shapes of secrets (protocol notes 1.3). A redacted JWT still has this shape, ending in `.REDACTED`.
JWT_PATTERN = rf"eyJ{_SEG}\.{_SEG}\.{_SEG}"
SB_KEY_PATTERN = r"sb_(?:publishable|secret)_[A-Za-z0-9_-]+"
# Tokens are matched with every dot-segment that follows: matching exactly three segments would let
# `eyJx.` just before a JWT take its header and payload as segments 2-3 and leave the signature.
_TOKEN_RE = re.compile(rf"eyJ{_SEG}(?:\.{_SEG}){{2,}}|sb_(publishable|secret)_[A-Za-z0-9_-]+(?:\.{_SEG})*")
# Literals without which _TOKEN_RE cannot match (case-sensitive).
_TOKEN_HINTS = ("eyJ", "sb_publishable_", "sb_secret_")

# Words that make a field name secret, matched case-insensitively (ASCII). The name is followed
# directly (after an optional closing quote) by `=`, `:` or `=>`.
_FIELD_NAMES = (
    _ci("api") + "[_-]?" + _ci("key"),
    _ci("token"),
    _ci("secret"),
    _ci("passw") + f"(?:{_ci('or')})?" + _ci("d"),
    _ci("authorization"),
)
# The word starts the name, follows `_`/`-`, or ends a camelCase name: `Token`, `access_token`,
# `X-Api-Key`, `DB_PASSWORD`, `accessToken`, `SECRET_KEY`. Not a PascalCase compound: error codes
# (`InvalidJWTToken: Token has expired`, `MissingAPIKey: ...`) are evidence, not secrets. Without
# lookbehind the character before the name is consumed, and given back through group 1.
_NAME = (
    "(?:^|[^A-Za-z0-9_-])(?:[A-Za-z0-9_-]*[_-]|[a-z0-9][A-Za-z0-9_-]*)?"
    + "(?:" + "|".join(_FIELD_NAMES) + ")" + f"(?:[_-]?{_ci('key')})?"
)
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# An auth scheme before the value is kept: `Authorization: Bearer REDACTED`.
_SCHEME = rf"(?:(?:{_ci('bearer')}|{_ci('basic')})[ \t]+)?"
# Characters that end an unquoted value: whitespace, URL and list separators, quotes, brackets.
_BARE_VALUE = "[^ \\t\\r\\n\\f\\v&,;\"'\\\\<>()\\[\\]{}`]+"
_FIELD_PATTERN = (
    # group 1: the name (and the character before it), an optional closing quote, the separator
    "(" + _NAME + r"""(?:\\?["'])?[ \t]*(?:=>|[:=])[ \t]*)"""
    # groups 2-5: the opening quote and scheme, one group per way of quoting the value
    + "(?:"
    + rf'("{_SCHEME})(?:[^"\\\n]|\\.)+'  # "value" (JSON, repr with double quotes)
    + rf"|('{_SCHEME})(?:[^'\\\n]|\\.)+"  # 'value' (Python dict repr, kwargs repr)
    + rf'|(\\+"{_SCHEME})[^"\\\n]+'  # \"value\" (JSON inside a JSON or repr string)
    + rf"|({_SCHEME}){_BARE_VALUE}"  # value (URL query, key=value text, header line)
    + ")"
)
_FIELD_RE = re.compile(_FIELD_PATTERN)
# The same replacement in polars/Rust syntax: keep the prefix (name, separator, quote, scheme).
_FIELD_REPLACEMENT = "".join(f"${{{i}}}" for i in range(1, _FIELD_RE.groups + 1)) + REDACTED

# Lower-cased literals at least one of which every secret contains: a superset test, cheap enough
# for the proxy hot path and the polars pre-filter. `sb_secret_` is covered by `secret`.
_HINTS = ("eyj", "sb_publishable_", "token", "secret", "passw", "apikey", "api_key", "api-key", "authorization")
_HINTS_PATTERN = "|".join(re.escape(h) for h in _HINTS)
_HINTS_RE = re.compile(_HINTS_PATTERN)
_HINTS_RE_BYTES = re.compile(_HINTS_PATTERN.encode())


def might_contain_secret(data: bytes | bytearray | memoryview | str) -> bool:
    """Fast precheck for the proxy hot path: False means `redact_text`/`redact_bytes` return `data` unchanged.

    May say True for text without secrets (`"token bucket full"`), never False for text with one.
    """
    try:
        if isinstance(data, str):
            return _HINTS_RE.search(data.lower()) is not None
        return _HINTS_RE_BYTES.search(bytes(data).lower()) is not None
    except Exception:  # a precheck must never be the reason a secret is kept: assume the worst
        return True


def _b64json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode("utf-8"))


def _is_plain(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(item, str) for item in value)
    return value is None or isinstance(value, str | int | float)


def _redact_jwt(token: str) -> str:
    """`header.payload.signature` -> `header.<payload with JWT_KEPT_CLAIMS only>.REDACTED`."""
    # The same key shows up in every connect line: cache, but not giant pseudo-tokens.
    return _redact_jwt_cached(token) if len(token) <= 4096 else _reduce_jwt(token)


def _reduce_jwt(token: str) -> str:
    header, payload, _signature = token.split(".")
    try:
        claims = _b64json(payload)
        if not isinstance(_b64json(header), dict) or not isinstance(claims, dict):
            return _UNREADABLE_JWT
        kept = {k: v for k, v in claims.items() if k in JWT_KEPT_CLAIMS and _is_plain(v)}
        reduced = base64.urlsafe_b64encode(json.dumps(kept, separators=(",", ":")).encode()).rstrip(b"=")
    except Exception:  # undecodable base64, not UTF-8, not JSON, absurd nesting or numbers
        return _UNREADABLE_JWT
    return f"{header}.{reduced.decode()}.{REDACTED}"


_redact_jwt_cached = functools.lru_cache(maxsize=1024)(_reduce_jwt)


def _redact_token(m: re.Match[str]) -> str:
    head, *rest = m.group(0).split(".")
    # Empty segments after the token are dots ending a sentence and stay; any other extra segment
    # may hide part of another token, so all of it goes.
    if kind := m.group(1):
        return f"sb_{kind}_{REDACTED}" + ("" if any(rest) else "." * len(rest))
    if any(rest[2:]):
        return _UNREADABLE_JWT
    return _redact_jwt(".".join((head, *rest[:2]))) + "." * len(rest[2:])


def _redact_value(value: str) -> str:
    """A secret field's value: a token keeps its redacted shape, anything else becomes REDACTED."""
    m = _TOKEN_RE.fullmatch(value)
    return _redact_token(m) if m else REDACTED


_AUTH_SCHEMES = frozenset({"bearer", "basic"})


def _redact_credentials(value: str, any_scheme: bool = False) -> str:
    """A whole secret value, maybe after an auth scheme: `Bearer eyJ…` keeps `Bearer` and the token's shape.

    `any_scheme` (Authorization headers) keeps any leading word (`Digest`, `Token`, ...).
    """
    scheme, _, rest = value.strip().partition(" ")
    rest = rest.strip()
    if rest and (scheme.lower() in _AUTH_SCHEMES or (any_scheme and scheme.isalpha())):
        return f"{scheme} {_redact_value(rest)}"
    return _redact_value(value.strip())


def _redact_field(m: re.Match[str]) -> str:
    prefix = "".join(g for g in m.groups() if g)
    return prefix + _redact_value(m.group(0)[len(prefix):])


# Every field name contains one of these (lower-cased). CPython's re gets no first-character
# prefilter from this pattern, so _sub_fields finds where a match can start by itself.
_FIELD_WORDS = ("api", "token", "secret", "passw", "authorization")


def _sub_fields(s: str) -> str:
    """`_FIELD_RE.sub(_redact_field, s)`, several times faster: match() only just before a name."""
    low = s.lower()
    if len(low) != len(s):  # some character lower-cases to several: positions would not line up
        return _FIELD_RE.sub(_redact_field, s)
    words = sorted(i for word in _FIELD_WORDS for i in _find_all(low, word))
    starts = []
    seen = start = 0  # s[seen:i] are all name characters when the previous word's name reaches i
    for i in words:
        j = i
        while j > seen and s[j - 1] in _NAME_CHARS:
            j -= 1
        if j > seen or j == 0 or s[j - 1] not in _NAME_CHARS:
            start = max(j - 1, 0)  # a match starts on the character before the name
        if not starts or starts[-1] != start:
            starts.append(start)
        seen = i
    out: list[str] = []
    done = 0
    for start in starts:
        if start >= done and (m := _FIELD_RE.match(s, start)):
            out += (s[done:start], _redact_field(m))
            done = m.end()
    return "".join(out) + s[done:] if out else s


def _find_all(text: str, word: str) -> list[int]:
    found = []
    i = text.find(word)
    while i >= 0:
        found.append(i)
        i = text.find(word, i + 1)
    return found


def redact_text(s: str) -> str:
    """Scrub a log line or any text; everything that is not a secret is kept character for character.

    >>> redact_text("connect wss://x.supabase.co/realtime/v1/websocket?apikey=sb_secret_abc123&vsn=1.0.0")
    'connect wss://x.supabase.co/realtime/v1/websocket?apikey=sb_secret_REDACTED&vsn=1.0.0'
    >>> redact_text('{"password": "hunter2", "user": "bob"}')
    '{"password": "REDACTED", "user": "bob"}'

    JWTs keep their header and the claims in JWT_KEPT_CLAIMS, re-encoded; the signature becomes
    REDACTED. Idempotent, and never raises on a str.
    """
    if not might_contain_secret(s):
        return s
    # Fields first: a field's value that is a token is redacted as a token (claims kept), and a
    # token can no longer swallow a field name next to it (`sb_secret_password=...`).
    s = _sub_fields(s)
    if any(h in s for h in _TOKEN_HINTS):
        s = _TOKEN_RE.sub(_redact_token, s)
    return s


def redact_bytes(b: bytes | bytearray | memoryview) -> bytes:
    """`redact_text` for bytes as they crossed the wire; invalid UTF-8 is kept byte for byte."""
    b = bytes(b)
    if not might_contain_secret(b):
        return b
    text = b.decode("utf-8", "surrogateescape")
    scrubbed = redact_text(text)
    return b if scrubbed == text else scrubbed.encode("utf-8", "surrogateescape")


# Query parameters whose value is a secret whatever it looks like (the field names above count too).
_SECRET_PARAMS = frozenset({"key", "jwt", "auth", "pwd", "sig", "signature"})
_USERINFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:)([^/?#@]+)@")
_SECRET_NAME_RE = re.compile("(?:" + "|".join(_FIELD_NAMES) + r")\Z")


def _is_secret_name(name: str) -> bool:
    name = urllib.parse.unquote(name)
    return name.lower() in _SECRET_PARAMS or _SECRET_NAME_RE.search(name) is not None


def _redact_param(param: str) -> str:
    name, eq, value = param.partition("=")
    if eq and value and _is_secret_name(name):
        return f"{name}={_redact_value(value)}"
    return param


def redact_url(url: str) -> str:
    """Scrub secret query values (`apikey`, `access_token`, `token`, `key`, ...), a userinfo password
    and any token in the path; the rest of the URL is kept as is.

    >>> redact_url("wss://x.supabase.co/realtime/v1/websocket?apikey=sb_publishable_abc&vsn=1.0.0")
    'wss://x.supabase.co/realtime/v1/websocket?apikey=sb_publishable_REDACTED&vsn=1.0.0'
    """
    base, q, rest = url.partition("?")
    if q:
        query, hash_, fragment = rest.partition("#")
        rest = "&".join(_redact_param(p) for p in query.split("&")) + hash_ + fragment
    url = _USERINFO_RE.sub(lambda m: m.group(1) + REDACTED + "@", base) + q + rest
    return redact_text(url)


# Header names whose whole value is a credential (compared lower-cased, `_` read as `-`).
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "apikey", "x-api-key", "api-key", "cookie",
                             "set-cookie"})
_SECRET_HEADER_WORDS = ("token", "secret", "passw", "apikey", "api-key", "auth")


def _redact_cookie(value: str, only_first: bool) -> str:
    parts = value.split(";")
    for i, part in enumerate(parts[:1] if only_first else parts):
        name, eq, secret = part.partition("=")
        if eq and secret.strip():
            parts[i] = f"{name}={_redact_value(secret.strip())}"
    return ";".join(parts)


def _redact_header_value(name: str, value: str) -> str:
    key = name.strip().lower().replace("_", "-")
    if key == "cookie" or key == "set-cookie":
        return _redact_cookie(value, only_first=key == "set-cookie")
    if key in _SECRET_HEADERS or any(word in key for word in _SECRET_HEADER_WORDS):
        return _redact_credentials(value, any_scheme=key.endswith("authorization")) if value.strip() else value
    return redact_text(value)


def _redact_header(name: Any, value: Any) -> Any:
    text_name = bytes(name).decode("latin-1") if isinstance(name, bytes | bytearray) else str(name)
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "surrogateescape")
        return _redact_header_value(text_name, text).encode("utf-8", "surrogateescape")
    return _redact_header_value(text_name, value) if isinstance(value, str) else value


def redact_headers(headers: Any) -> Any:
    """Scrub HTTP headers given as a dict or a list of `(name, value)` pairs; returns the same type.

    `Authorization`, `apikey`, `x-api-key`, `Cookie` and names containing token/secret/password/auth
    lose their value (an auth scheme such as `Bearer` and cookie names are kept); other values go
    through `redact_text`.

    >>> redact_headers([("Authorization", "Bearer abc"), ("Host", "x.supabase.co")])
    [('Authorization', 'Bearer REDACTED'), ('Host', 'x.supabase.co')]
    """
    if isinstance(headers, Mapping):
        scrubbed = {name: _redact_header(name, value) for name, value in headers.items()}
        if type(headers) is dict:
            return scrubbed
        try:
            return type(headers)(scrubbed)
        except Exception:
            return scrubbed
    pairs = []
    for pair in headers:
        try:
            name, value = pair
        except (TypeError, ValueError):
            pairs.append(pair)
            continue
        pairs.append([name, _redact_header(name, value)] if isinstance(pair, list) else (name, _redact_header(name, value)))
    return tuple(pairs) if isinstance(headers, tuple) else pairs


_SECRET_JSON_KEYS = frozenset({"access_token", "user_token", "apikey", "api_key", "x_api_key", "password",
                               "passwd", "secret", "client_secret", "token", "refresh_token", "authorization",
                               "cookie", "set_cookie"})
_SECRET_JSON_SUFFIXES = ("token", "secret", "password", "passwd", "apikey", "api_key")


def _is_secret_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    norm = key.lower().replace("-", "_")
    return norm in _SECRET_JSON_KEYS or norm.endswith(_SECRET_JSON_SUFFIXES)


def _redact_secret_json_value(value: Any) -> Any:
    if isinstance(value, str):
        return _redact_credentials(value) if value.strip() else value
    return value if value is None or isinstance(value, bool) else REDACTED


def redact_json_obj(obj: Any) -> Any:
    """Scrub a decoded JSON value (dicts, lists, tuples, scalars); returns a new object, never mutates.

    Values of keys named like `access_token`, `user_token`, `apikey`, `x-api-key`, `password`,
    `secret`, `token`, `authorization` (case-insensitive, also as a suffix: `refresh_token`,
    `accessToken`) become REDACTED (a JWT keeps its redacted shape); every other string, keys
    included, goes through `redact_text`.

    >>> redact_json_obj({"config": {"private": True}, "access_token": "sb_secret_abc"})
    {'config': {'private': True}, 'access_token': 'sb_secret_REDACTED'}
    """
    # Iterative, not recursive: a deeply nested payload must not raise RecursionError.
    def shell(value: Any) -> dict | list | None:
        if isinstance(value, dict):
            return {}
        if isinstance(value, list | tuple):
            return []
        return None

    def leaf(value: Any) -> Any:
        return redact_text(value) if isinstance(value, str) else value

    root = shell(obj)
    if root is None:
        return leaf(obj)
    stack: list[tuple[Any, Any]] = [(obj, root)]
    as_tuples: list[tuple[Any, Any, list]] = []  # (parent, key, list) to turn back into tuples, inner first
    while stack:
        source, target = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, value in items:
            if isinstance(source, dict):
                slot = leaf(key)
                secret = _is_secret_key(key)
            else:
                slot = len(target)
                target.append(None)
                secret = False
            child = None if secret else shell(value)
            if child is None:
                target[slot] = _redact_secret_json_value(value) if secret else leaf(value)
                continue
            target[slot] = child
            stack.append((value, child))
            if isinstance(value, tuple):
                as_tuples.append((target, slot, child))
    for parent, slot, items_ in reversed(as_tuples):
        parent[slot] = tuple(items_)
    return tuple(root) if isinstance(obj, tuple) else root


def _redact_series(s: pl.Series) -> pl.Series:
    if s.dtype != pl.String:
        s = s.cast(pl.String)
    # One cheap vectorised pass picks the candidate rows (lower-casing then a case-sensitive literal
    # search is ~3x faster than a case-insensitive one); the field regex runs on those only.
    candidates = s.str.to_lowercase().str.contains(_HINTS_PATTERN).fill_null(False).arg_true()
    if candidates.len() == 0:
        return s
    rows = s.gather(candidates)
    scrubbed = rows.str.replace_all(_FIELD_PATTERN, _FIELD_REPLACEMENT)
    # Rows holding a token go through redact_text itself: re-encoding JWT claims needs Python.
    # Without a token, redact_text is exactly the field regex with a constant replacement.
    with_token = rows.str.contains("|".join(_TOKEN_HINTS)).arg_true()
    if with_token.len():
        scrubbed = scrubbed.scatter(with_token, [redact_text(v) for v in rows.gather(with_token).to_list()])
    return s.clone().scatter(candidates, scrubbed)


def redact_expr(expr: pl.Expr) -> pl.Expr:
    """`redact_text` over a polars String column, for bulk log ingestion; same output row for row.

    >>> pl.DataFrame({"line": ["password=hunter2 ok", None]}).select(redact_expr(pl.col("line")))["line"].to_list()
    ['password=REDACTED ok', None]
    """
    return expr.map_batches(_redact_series, return_dtype=pl.String, is_elementwise=True)
