"""Hostile Secret templates: memory and CPU bombs, deep nesting, output floods, sandbox escapes, leaks.

Shared by tests/unit/test_render_hostile.py and tests/bench/render_cost.py, with the key they are
rendered against. Each entry: an id, the template source, and the reasons a TemplateError may carry
(empty: the template may also render, as long as it does so within the limits).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from storage_token.secrets.render import KeyMaterial

LIMIT: Final = "LimitExceeded"
REFUSED: Final = "SandboxRefused"
UNDEFINED: Final = "UndefinedVariable"
SYNTAX: Final = "TemplateSyntaxError"
EVALUATION: Final = "EvaluationFailed"

# Random-looking, so no 4-character piece of it occurs in any message text by chance.
SECRET = "Zq7xW9vKp2RtY4mN8bHj3LcF6dGs1QaU"
ACCESS_KEY_ID = "AKIDJ5kT0wE2uR9yI7oP"

KEY = KeyMaterial(
    provider="b2",
    key_id="kid-77f0e1d2c3b4",
    key_name="sto-hostile-1",
    access_key_id=ACCESS_KEY_ID,
    secret_access_key=SECRET,
    endpoint="https://s3.us-west-004.backblazeb2.com",
    region="us-west-004",
    buckets=("media", "backups"),
    prefixes=("web/", "logs/"),
    expires_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    native={"B2_APPLICATION_KEY_ID": ACCESS_KEY_ID, "B2_APPLICATION_KEY": SECRET},
)

_FAN8 = "{% set a=[1,1,1,1,1,1,1,1] %}" + "".join(
    f"{{% set {new}=[{old},{old},{old},{old},{old},{old},{old},{old}] %}}"
    for old, new in zip("abcdef", "bcdefg", strict=False)
)  # g holds 8**7 = 2 million ones, through 57 small lists
_BIG_LIST = "{% set a=[1]*4096 %}"
_A32 = "[" + ",".join(["a"] * 32) + "]"

HOSTILE: Final[list[tuple[str, str, frozenset[str]]]] = [
    # --- memory ---------------------------------------------------------------------------------
    ("repr of a shared 64 KiB string x4096", "{% set s = 'a' * 65536 %}{{ [s] * 4096 }}", frozenset({LIMIT})),
    ("list of lists of lists printed", _BIG_LIST + "{% set b=[a]*4096 %}{{ [b]*4096 }}", frozenset({LIMIT})),
    ("literal fan-out printed", _FAN8 + "{{ g }}", frozenset({LIMIT})),
    ("literal fan-out joined", _FAN8 + "{{ g | join(',') }}", frozenset({LIMIT})),
    ("literal fan-out as JSON", _FAN8 + "{{ g | tojson }}", frozenset({LIMIT})),
    ("literal fan-out concatenated", _FAN8 + "{{ 'x' ~ g }}", frozenset({LIMIT})),
    ("literal fan-out stringified", _FAN8 + "{{ g | string | length }}", frozenset({LIMIT})),
    ("map str over a big nested list", _BIG_LIST + "{{ ([a]*100) | map('string') | list }}", frozenset({LIMIT})),
    ("indented JSON of nested lists", _BIG_LIST + "{{ " + _A32 + " | tojson(indent=64) }}", frozenset({LIMIT})),
    (
        "dict fan-out printed",
        "{% set d = {'a': 'x' * 60000, 'b': 'y' * 60000} %}{% set e = {'a': d, 'b': d, 'c': d, 'd': d} %}"
        "{% set f = [e, e, e, e, e, e, e, e] %}{{ f }}",
        frozenset({LIMIT}),
    ),
    ("a string split into 60000 items", "{{ ('x ' * 30000).split() | length }}", frozenset({LIMIT})),
    ("a string listed into 60000 items", "{{ ('x' * 60000) | list | length }}", frozenset({LIMIT})),
    ("replace growth", "{% set s = 'ab' * 30000 %}{{ s | replace('a', s) }}", frozenset({LIMIT})),
    ("indent growth", "{{ ('\\n' * 60000) | indent(64) }}", frozenset({LIMIT})),
    ("base64 growth", "{{ ('x' * 60000) | b64encode }}", frozenset({LIMIT})),
    ("list addition past the item cap", "{{ ([1] * 4096 + [2] * 4096) | length }}", frozenset({LIMIT})),
    ("nested list addition", _BIG_LIST + "{% set b = [a] * 60 %}{{ (b + b) | length }}", frozenset({LIMIT})),
    # --- CPU ------------------------------------------------------------------------------------
    (
        "nested-list equality (C1)",
        "{% set a1=[1]*4096 %}{% set a2=[1]*4096 %}{% set b=[a1]*4096 %}{% set c=[a2]*4096 %}"
        "{{ [b]*4096 == [c]*4096 }}",
        frozenset({LIMIT}),
    ),
    ("literal fan-out equality", _FAN8 + "{{ g == [f,f,f,f,f,f,f,f] }}", frozenset({LIMIT})),
    ("literal fan-out membership", _FAN8 + "{{ 2 in g }}", frozenset({LIMIT})),
    ("sorting shared nested lists", _BIG_LIST + "{{ " + _A32 + " | sort | length }}", frozenset({LIMIT})),
    ("max over nested lists", _BIG_LIST + "{{ " + _A32 + " | max | length }}", frozenset({LIMIT})),
    (
        "equality of distinct big lists in a loop",
        "{% set a = ([1]*4096)|list %}{% set b = ([1]*4096)|list %}{% for i in 'x' * 4000 %}{{ a == b }}{% endfor %}",
        frozenset({LIMIT}),
    ),
    ("nested loops", "{% for a in 'x' * 4000 %}{% for b in 'x' * 4000 %}{% endfor %}{% endfor %}", frozenset({LIMIT})),
    (
        "a costly method in a loop",
        "{% set s = 'x' * 60000 %}{% for c in s %}{{ s.count('x') }}{% endfor %}",
        frozenset({LIMIT}),
    ),
    (
        "exponential macro recursion",
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
        frozenset({LIMIT}),
    ),
    ("tower of powers", "{{ " + " ** ".join(["2"] * 14) + " }}", frozenset({LIMIT})),
    ("big integer products", "{% set n = 10 ** 1200 %}{{ n * n * n * n }}", frozenset({LIMIT})),
    ("int() of a long digit string", "{{ ('9' * 60000) | int }}", frozenset()),
    # --- recursion and deep nesting --------------------------------------------------------------
    ("endless macro recursion", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", frozenset({LIMIT})),
    (
        "macro nesting a list deeper each call",
        "{% macro f(x) %}{{ f([x]) }}{% endmacro %}{{ f(1) }}",
        frozenset({LIMIT}),
    ),
    ("3000 nested list literals", "{{ " + "[" * 3000 + "]" * 3000 + " }}", frozenset({LIMIT, SYNTAX})),
    ("3000 nested parentheses", "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}", frozenset({LIMIT, SYNTAX})),
    ("2000 chained filters", "{{ bucket" + "|upper" * 2000 + " }}", frozenset({LIMIT, SYNTAX})),
    ("4000 nots", "{{ " + "not " * 4000 + "bucket }}", frozenset({LIMIT, SYNTAX})),
    ("1500 nested ifs", "{% if 1 %}" * 1500 + "x" + "{% endif %}" * 1500, frozenset({LIMIT, SYNTAX})),
    ("40 nested list literals", "{{ " + "[" * 40 + "1" + "]" * 40 + " }}", frozenset({LIMIT})),
    # --- output size ---------------------------------------------------------------------------------
    ("output over the cap", "{{ 'a' * 60000 }}{{ 'b' * 60000 }}", frozenset({LIMIT})),
    (
        "output captured in a block",
        "{% set x %}{% for c in 'y' * 60000 %}{{ 'z' * 60000 }}{% endfor %}{% endset %}",
        frozenset({LIMIT}),
    ),
    ("printing a list in a long loop", "{% for i in 'x' * 60000 %}{{ buckets }}{% endfor %}", frozenset({LIMIT})),
    ("printf-style width", "{{ '%999999999s' % bucket }}", frozenset({REFUSED})),
    ("padding method", "{{ bucket.ljust(10**9) }}", frozenset({REFUSED})),
    # --- sandbox escapes -----------------------------------------------------------------------------
    ("subclasses via mro", "{{ ''.__class__.__mro__[1].__subclasses__() }}", frozenset({REFUSED})),
    ("a list's base class", "{{ buckets.__class__.__base__ }}", frozenset({REFUSED})),
    ("globals via cycler", "{{ cycler.__init__.__globals__.os }}", frozenset({UNDEFINED})),
    ("the template context via self", "{{ self._TemplateReference__context }}", frozenset({REFUSED})),
    ("str.format attribute walk", "{{ '{0.__class__.__init__.__globals__}'.format(bucket) }}", frozenset({REFUSED})),
    ("str.format_map", "{{ '{x}'.format_map({'x': bucket}) }}", frozenset({REFUSED})),
    ("generator frame globals", "{{ (buckets | map('upper')).gi_frame.f_globals }}", frozenset({REFUSED})),
    ("loop internals", "{% for b in buckets %}{{ loop._iterator }}{% endfor %}", frozenset({REFUSED})),
    ("dunder call", "{{ bucket.__len__() }}", frozenset({REFUSED})),
    ("dict class", "{{ {}.__class__.__subclasses__ }}", frozenset({REFUSED})),
    ("mutating a list", "{% set x = buckets.pop() %}{{ x }}", frozenset({REFUSED})),
    ("the attr filter", "{{ bucket | attr('__class__') }}", frozenset({SYNTAX})),
    ("getitem of a dunder", "{{ bucket['__class__'] }}", frozenset({REFUSED, UNDEFINED})),
    ("flask-style request", "{{ request.application.__globals__ }}", frozenset({UNDEFINED})),
    ("include a file", "{% include '/etc/passwd' %}", frozenset({REFUSED})),
    ("namespace to smuggle state", "{% set ns = namespace(x=1) %}{{ ns.x }}", frozenset({UNDEFINED})),
    ("range global", "{% for i in range(10**9) %}x{% endfor %}", frozenset({UNDEFINED})),
    # --- error text computed from the key ------------------------------------------------------------
    ("a test named by the key", "{{ [1] | select(secretAccessKey[1:]) | list }}", frozenset({EVALUATION})),
    (
        "a filter named by the reversed key",
        "{{ [1] | map(secretAccessKey | reverse | join) | list }}",
        frozenset({EVALUATION}),
    ),
    ("int() of the key with the key as base", "{{ secretAccessKey | int(base=secretAccessKey) }}", frozenset()),
    ("division by a computed zero", "{{ 1 / (secretAccessKey | length - secretAccessKey | length) }}", frozenset()),
    ("the key as a missing index", "{{ buckets[secretAccessKey[1:]] }}", frozenset({UNDEFINED, EVALUATION})),
    ("the key in a type error", "{{ secretAccessKey ~ (secretAccessKey | list)[0] + 1 }}", frozenset()),
    ("the key as JSON, then int", "{{ {secretAccessKey: 1} | tojson | int + [] }}", frozenset()),
    ("the key as an attribute name", "{{ buckets | map(attribute=secretAccessKey) | first + 1 }}", frozenset()),
    ("the key split in pieces as a test", "{{ [1] | select(secretAccessKey[3:9]) | list }}", frozenset({EVALUATION})),
]
