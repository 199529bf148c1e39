"""Secret rendering: preset layouts, free templates, and the sandbox holding against hostile templates."""

from __future__ import annotations

import configparser
import string
import time
import traceback
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from builders import ACCESS_KEY_ID, BARE, KEY, SECRET
from hypothesis import given
from hypothesis import strategies as st

from storage_token.api.token import SecretTemplate
from storage_token.providers.base import IssuedKey
from storage_token.secrets.render import (
    MAX_OUTPUT_BYTES,
    PRESETS,
    TEMPLATE_VARIABLES,
    KeyMaterial,
    TemplateError,
    render_secret_data,
    validate_template,
)


def render(source: str, key: KeyMaterial = KEY, name: str = "out") -> str:
    return render_secret_data(key, SecretTemplate(data={name: source}, include_preset=False))[name]


def render_error(source: str, key: KeyMaterial = KEY, name: str = "out") -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        render(source, key, name)
    return caught.value


def ini(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()  # no interpolation: a secret may hold '%'
    parser.read_string(text)
    return parser


# --- presets -----------------------------------------------------------------------------


def test_default_preset_layout() -> None:
    assert render_secret_data(KEY, SecretTemplate()) == {
        "accessKeyId": ACCESS_KEY_ID,
        "secretAccessKey": SECRET,
        "endpoint": "https://s3.us-west-004.backblazeb2.com",
        "region": "us-west-004",
        "bucket": "media",
        "prefix": "web/",
        "expiresAt": "2030-01-02T03:04:05Z",
        "B2_APPLICATION_KEY_ID": ACCESS_KEY_ID,
        "B2_APPLICATION_KEY": SECRET,
    }


def test_default_preset_keeps_every_documented_key_when_values_are_unknown() -> None:
    assert render_secret_data(BARE, SecretTemplate()) == {
        "accessKeyId": ACCESS_KEY_ID,
        "secretAccessKey": SECRET,
        "endpoint": "",
        "region": "",
        "bucket": "",
        "prefix": "",
        "expiresAt": "",
    }


def test_a_native_name_never_displaces_a_documented_key() -> None:
    key = replace(KEY, native={"accessKeyId": "other", "B2_APPLICATION_KEY": SECRET})
    data = render_secret_data(key, SecretTemplate())
    assert data["accessKeyId"] == ACCESS_KEY_ID
    assert data["B2_APPLICATION_KEY"] == SECRET


def test_aws_preset_layout() -> None:
    assert render_secret_data(KEY, SecretTemplate(preset="aws")) == {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_ENDPOINT_URL": "https://s3.us-west-004.backblazeb2.com",
        "AWS_REGION": "us-west-004",
        "AWS_DEFAULT_REGION": "us-west-004",
        "expiresAt": "2030-01-02T03:04:05Z",
    }


def test_rclone_preset_is_a_parseable_s3_remote() -> None:
    data = render_secret_data(KEY, SecretTemplate(preset="rclone"))
    assert set(data) == {"rclone.conf", "expiresAt"}
    assert data["expiresAt"] == "2030-01-02T03:04:05Z"
    conf = ini(data["rclone.conf"])
    assert conf.sections() == ["storage"]
    remote = dict(conf["storage"])
    assert remote["type"] == "s3"
    assert remote["provider"] == "Other"
    assert remote["access_key_id"] == ACCESS_KEY_ID
    assert remote["secret_access_key"] == SECRET
    assert remote["endpoint"] == "https://s3.us-west-004.backblazeb2.com"
    assert remote["region"] == "us-west-004"


def test_rclone_preset_keeps_its_layout_without_endpoint_or_region() -> None:
    remote = dict(ini(render_secret_data(BARE, SecretTemplate(preset="rclone"))["rclone.conf"])["storage"])
    assert remote["endpoint"] == ""
    assert remote["region"] == ""
    assert remote["secret_access_key"] == SECRET


def test_s3cmd_preset_is_a_parseable_config() -> None:
    data = render_secret_data(KEY, SecretTemplate(preset="s3cmd"))
    assert set(data) == {".s3cfg", "expiresAt"}
    section = dict(ini(data[".s3cfg"])["default"])
    assert section["access_key"] == ACCESS_KEY_ID
    assert section["secret_key"] == SECRET
    assert section["host_base"] == "s3.us-west-004.backblazeb2.com"
    assert section["host_bucket"] == "s3.us-west-004.backblazeb2.com"
    assert section["use_https"] == "True"
    assert section["bucket_location"] == "us-west-004"


@pytest.mark.parametrize(
    ("endpoint", "host", "use_https"),
    [
        pytest.param("http://127.0.0.1:9000", "127.0.0.1:9000", "False", id="plain HTTP with a port"),
        pytest.param("https://s3.example.com:8443/", "s3.example.com:8443", "True", id="HTTPS with a port"),
        pytest.param("s3.example.com", "s3.example.com", "True", id="a bare host name means HTTPS"),
        pytest.param("HTTP://S3.example.com", "S3.example.com", "False", id="the scheme is case-insensitive"),
        pytest.param(None, "", "True", id="no endpoint keeps the layout"),
    ],
)
def test_s3cmd_host_and_scheme_come_from_the_endpoint(endpoint: str | None, host: str, use_https: str) -> None:
    section = dict(
        ini(render_secret_data(replace(KEY, endpoint=endpoint), SecretTemplate(preset="s3cmd"))[".s3cfg"])["default"]
    )
    assert (section["host_base"], section["host_bucket"], section["use_https"]) == (host, host, use_https)


@pytest.mark.parametrize("preset", ["rclone", "s3cmd"])
@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(SECRET + "\nsecret_key = injected", id="a line break would inject an option"),
        pytest.param(SECRET + "\r", id="a carriage return"),
        pytest.param(" " + SECRET, id="leading whitespace would be stripped by readers"),
    ],
)
def test_config_file_presets_refuse_values_they_cannot_write_faithfully(preset: str, secret: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render_secret_data(replace(KEY, secret_access_key=secret), SecretTemplate(preset=preset))
    assert caught.value.reason == TemplateError.UNSAFE_VALUE
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("expires_at", "expected"),
    [
        pytest.param(datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC), "2030-01-02T03:04:05Z", id="UTC"),
        pytest.param(
            datetime(2030, 1, 2, 9, 4, 5, 999999, tzinfo=timezone(timedelta(hours=6))),
            "2030-01-02T03:04:05Z",
            id="another offset is converted and sub-seconds dropped",
        ),
        pytest.param(datetime(2030, 1, 2, 3, 4, 5), "2030-01-02T03:04:05Z", id="a naive time is taken as UTC"),
        pytest.param(None, "", id="unknown expiry is empty"),
    ],
)
def test_expires_at_is_rfc3339_utc(expires_at: datetime | None, expected: str) -> None:
    key = replace(KEY, expires_at=expires_at)
    for preset in PRESETS:
        if preset == "cosi":
            continue  # exactly COSI's keys, none of ours (tests/unit/test_cosi_preset.py)
        assert render_secret_data(key, SecretTemplate(preset=preset))["expiresAt"] == expected
    assert render("{{ expiresAt }}", key) == expected


def test_an_unknown_preset_is_refused_before_and_at_render() -> None:
    template = SecretTemplate(preset="vault")
    for attempt in (lambda: validate_template(template), lambda: render_secret_data(KEY, template)):
        with pytest.raises(TemplateError, match="unknown preset") as caught:
            attempt()
        assert caught.value.reason == TemplateError.UNKNOWN_PRESET
        assert "default, aws, rclone, s3cmd" in str(caught.value)


# --- free templates ----------------------------------------------------------------------


def test_every_documented_variable_is_available() -> None:
    source = "|".join(f"{{{{ {name} }}}}" for name in TEMPLATE_VARIABLES)
    assert render(source) == "|".join(
        [
            ACCESS_KEY_ID,
            SECRET,
            "https://s3.us-west-004.backblazeb2.com",
            "us-west-004",
            "media",
            "['media', 'backups']",
            "web/",
            "['web/', 'logs/']",
            "2030-01-02T03:04:05Z",
            "kid-0004a1b2c3d4e5f6",
            "st-cluster1-default-web-1",
            "b2",
        ]
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("{{ accessKeyId }}:{{ secretAccessKey }}", f"{ACCESS_KEY_ID}:{SECRET}", id="plain substitution"),
        pytest.param("{{ buckets | join(',') }}", "media,backups", id="join a list"),
        pytest.param(
            "{% for b in buckets %}{{ loop.index }}={{ b | upper }};{% endfor %}",
            "1=MEDIA;2=BACKUPS;",
            id="loop with loop variables and a filter",
        ),
        pytest.param(
            "{% if provider == 'b2' %}backblaze{% else %}ucloud{% endif %}", "backblaze", id="conditional on provider"
        ),
        pytest.param(
            '{"auths": {"x": {"auth": "{{ (accessKeyId ~ ":" ~ secretAccessKey) | b64encode }}"}}}',
            '{"auths": {"x": {"auth": "QUtJRDAwMDRhMWIyYzNkNGU1ZjY6czNjcjN0L0szeStNYXRlcmlhbD1YcTk="}}}',
            id="b64encode for a registry-style auth",
        ),
        pytest.param("{{ buckets | tojson }}", '["media", "backups"]', id="tojson"),
        pytest.param("{{ endpoint.replace('https://', '') }}", "s3.us-west-004.backblazeb2.com", id="a str method"),
        pytest.param("{{ accessKeyId[:4] }}…{{ accessKeyId[-2:] }}", "AKID…f6", id="slices"),
        pytest.param("{{ region or 'us-east-1' }}", "us-west-004", id="or-default"),
        pytest.param(
            "{% macro line(k, v) %}{{ k }}={{ v }}\n{% endmacro %}"
            "{{ line('KEY', accessKeyId) }}{{ line('B', bucket) }}",
            f"KEY={ACCESS_KEY_ID}\nB=media\n",
            id="macros",
        ),
        pytest.param(
            "{% set host = endpoint.split('//')[1] %}{{ host }}", "s3.us-west-004.backblazeb2.com", id="set a variable"
        ),
        pytest.param(
            "[remote]\nkey = {{ accessKeyId }}\n", f"[remote]\nkey = {ACCESS_KEY_ID}\n", id="trailing newline kept"
        ),
    ],
)
def test_free_templates_render(source: str, expected: str) -> None:
    assert render(source) == expected


def test_template_keys_follow_the_preset_and_override_it() -> None:
    template = SecretTemplate(
        preset="aws",
        data={"AWS_REGION": "{{ region | upper }}", "config.json": '{"bucket": "{{ bucket }}"}'},
    )
    data = render_secret_data(KEY, template)
    assert list(data) == [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "expiresAt",
        "config.json",
    ]
    assert data["AWS_REGION"] == "US-WEST-004"
    assert data["AWS_DEFAULT_REGION"] == "us-west-004"
    assert data["config.json"] == '{"bucket": "media"}'


def test_without_the_preset_only_template_keys_are_written() -> None:
    template = SecretTemplate(preset="default", data={"url": "{{ endpoint }}/{{ bucket }}"}, include_preset=False)
    assert render_secret_data(KEY, template) == {"url": "https://s3.us-west-004.backblazeb2.com/media"}


def test_no_template_and_no_preset_is_an_empty_secret() -> None:
    assert render_secret_data(KEY, SecretTemplate(include_preset=False)) == {}


def test_validate_accepts_a_good_template_without_any_key() -> None:
    validate_template(SecretTemplate(preset="rclone", data={"env": "ID={{ accessKeyId }}\n"}))


# --- hostile templates -------------------------------------------------------------------

HOSTILE = [
    pytest.param("{{ ''.__class__.__mro__ }}", TemplateError.REFUSED, "'__class__'", id="python internals via mro"),
    pytest.param("{{ self }}", TemplateError.REFUSED, "'self'", id="the template reference self"),
    pytest.param("{{ self.__init__ }}", TemplateError.REFUSED, "'self'", id="internals via self"),
    pytest.param("{{ cycler.__init__.__globals__ }}", TemplateError.UNDEFINED, "'cycler'", id="cycler globals"),
    pytest.param("{{ lipsum }}", TemplateError.UNDEFINED, "'lipsum'", id="lipsum"),
    pytest.param("{{ joiner() ~ namespace() }}", TemplateError.UNDEFINED, "'joiner'", id="other default globals"),
    pytest.param("{% include '/etc/passwd' %}", TemplateError.REFUSED, "include", id="include a file"),
    pytest.param("{% import 'x.j2' as x %}", TemplateError.REFUSED, "import", id="import a template"),
    pytest.param("{% from 'x.j2' import y %}", TemplateError.REFUSED, "import", id="from-import a template"),
    pytest.param("{% extends 'base.j2' %}", TemplateError.REFUSED, "extends", id="extend a template"),
    pytest.param(
        "{% for i in range(10**9) %}x{% endfor %}", TemplateError.UNDEFINED, "'range'", id="a huge range loop"
    ),
    pytest.param("{{ 'a' * 10**9 }}", TemplateError.LIMIT, "exceed", id="string multiplication"),
    pytest.param("{{ [0] * 10**9 }}", TemplateError.LIMIT, "exceed", id="list multiplication"),
    pytest.param("{{ 10 ** 100000 }}", TemplateError.LIMIT, "bits", id="huge integer power"),
    pytest.param("{{ config }}", TemplateError.UNDEFINED, "'config'", id="flask-style config"),
    pytest.param("{{ environ }}", TemplateError.UNDEFINED, "'environ'", id="environment variables"),
    pytest.param("{{ buckets.append('x') }}", TemplateError.REFUSED, "'append'", id="mutating a list"),
    pytest.param("{{ '{0.__class__}'.format(bucket) }}", TemplateError.REFUSED, "'format'", id="str.format"),
    pytest.param("{{ '%999999999s' % bucket }}", TemplateError.REFUSED, "%-formatting", id="printf widths"),
    pytest.param("{{ bucket.ljust(10**9) }}", TemplateError.REFUSED, "'ljust'", id="padding methods"),
    pytest.param("{{ bucket | center(10**9) }}", TemplateError.SYNTAX, "'center'", id="filters off the list"),
    pytest.param("{{ bucket | attr('__class__') }}", TemplateError.SYNTAX, "'attr'", id="the attr filter"),
    pytest.param("{{ bucket | indent(10**9) }}", TemplateError.LIMIT, "indent", id="huge indentation"),
    pytest.param("{{ buckets | tojson(indent=10**9) }}", TemplateError.LIMIT, "indent", id="huge JSON indentation"),
    pytest.param(
        "{% set s = 'x' * 1000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
        TemplateError.LIMIT,
        "cost",
        id="nested loops without output",
    ),
    pytest.param(
        "{% set s = 'x' * 60000 %}{% for c in s %}{% if 'xy' in s %}{% endif %}{% endfor %}",
        TemplateError.LIMIT,
        "cost",
        id="expensive comparisons in a loop",
    ),
    pytest.param(
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
        TemplateError.LIMIT,
        "cost",
        id="exponential macro recursion",
    ),
    pytest.param(
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", TemplateError.LIMIT, "recursion", id="endless recursion"
    ),
    pytest.param(
        "{% set a = bucket * 9000 %}{% set b = a ~ a %}{% set c = b ~ b %}{{ c }}",
        TemplateError.LIMIT,
        "exceed",
        id="doubling by concatenation",
    ),
    pytest.param(
        "{% set x %}{% for c in 'y' * 60000 %}{{ 'z' * 60000 }}{% endfor %}{% endset %}",
        TemplateError.LIMIT,
        "produced",
        id="output captured in a block",
    ),
    pytest.param("{{ ('a' * 60000) | replace('a', 'aaaa') }}", TemplateError.LIMIT, "exceed", id="replace growth"),
    pytest.param("{% set s = 'a' * 4000 %}{{ s | join(s) }}", TemplateError.LIMIT, "exceed", id="join growth"),
    pytest.param(
        "{% for b in buckets recursive %}{{ loop(buckets) }}{% endfor %}",
        TemplateError.REFUSED,
        "recursive",
        id="recursive loops",
    ),
    pytest.param("{{ 'a' * 60000 }}{{ 'b' * 60000 }}", TemplateError.LIMIT, "output", id="output over the cap"),
    pytest.param(
        "{% for b in buckets %}{{ loop.__class__ }}{% endfor %}",
        TemplateError.REFUSED,
        "'__class__'",
        id="loop internals",
    ),
    pytest.param("{{ (buckets | map('upper')).gi_frame }}", TemplateError.REFUSED, "'gi_frame'", id="generator frames"),
]


@pytest.mark.parametrize(("source", "reason", "fragment"), HOSTILE)
def test_hostile_templates_fail_fast_with_a_clear_error(source: str, reason: str, fragment: str) -> None:
    started = time.monotonic()
    error = render_error(source, name="evil.txt")
    assert time.monotonic() - started < 5
    assert error.reason == reason
    assert error.secret_key == "evil.txt"
    message = str(error)
    assert message.startswith("Secret key 'evil.txt': ")
    assert fragment in message
    assert SECRET not in message
    assert ACCESS_KEY_ID not in message


def test_output_just_under_the_cap_is_fine() -> None:
    assert len(render(f"{{{{ 'a' * {MAX_OUTPUT_BYTES} }}}}")) == MAX_OUTPUT_BYTES


def test_undefined_variable_is_named_with_its_line() -> None:
    error = render_error("ok\n{{ acessKeyId }}")
    assert error.reason == TemplateError.UNDEFINED
    assert "undefined variable 'acessKeyId' at line 2" in str(error)


def test_undefined_attribute_is_reported_at_render() -> None:
    error = render_error("\n\n{{ bucket.nope }}")
    assert error.reason == TemplateError.UNDEFINED
    assert "has no attribute or element 'nope' at line 3" in str(error)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        pytest.param("line one\n{{ bucket }\n", "syntax error at line 2", id="unclosed expression"),
        pytest.param("{% for b in buckets %}", "syntax error at line 1", id="unclosed block"),
        pytest.param("{% frobnicate %}", "unknown tag 'frobnicate'", id="unknown tag"),
        pytest.param("{{ bucket | nosuchfilter }}", "No filter named 'nosuchfilter'", id="unknown filter"),
    ],
)
def test_syntax_errors_are_reported_before_any_key_exists(source: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as caught:
        validate_template(SecretTemplate(data={"conf": source}))
    assert caught.value.reason == TemplateError.SYNTAX
    assert caught.value.secret_key == "conf"
    assert str(caught.value).startswith("Secret key 'conf': ")
    assert fragment in str(caught.value)
    assert render_error(source).reason == TemplateError.SYNTAX


def test_validate_refuses_what_is_known_to_be_refused_without_rendering() -> None:
    with pytest.raises(TemplateError, match="include") as caught:
        validate_template(SecretTemplate(data={"a": "{% include 'x' %}"}))
    assert caught.value.reason == TemplateError.REFUSED


def test_template_source_size_is_capped() -> None:
    error = render_error("x" * (16 * 1024 + 1))
    assert error.reason == TemplateError.LIMIT


def test_the_whole_secret_size_is_capped() -> None:
    data = {f"part{i}": f"{{{{ 'x' * {MAX_OUTPUT_BYTES} }}}}" for i in range(9)}
    with pytest.raises(TemplateError, match="Secret's data would exceed") as caught:
        render_secret_data(KEY, SecretTemplate(data=data))
    assert caught.value.reason == TemplateError.LIMIT


# --- no key material in errors -----------------------------------------------------------

LEAKY = [
    pytest.param("{{ secretAccessKey }}{{ nope }}", id="echo, then an undefined variable"),
    pytest.param("{{ secretAccessKey }}{{ buckets[secretAccessKey] }}", id="the secret as a missing list index"),
    pytest.param("{{ {'a': 1}[secretAccessKey] }}", id="the secret as a missing dict key"),
    pytest.param("{{ {'a': 1}[secretAccessKey[::-1]] }}", id="a transformed secret as a missing key"),
    pytest.param("{{ bucket[accessKeyId] }}", id="the access key id as a missing attribute"),
    pytest.param("{{ secretAccessKey }}{{ secretAccessKey + 1 }}", id="a type error"),
    pytest.param("{{ secretAccessKey }}{{ secretAccessKey | int + 'x' }}", id="a type error after a filter"),
    pytest.param("{{ secretAccessKey.split(secretAccessKey, secretAccessKey) }}", id="an error inside a str method"),
    pytest.param(f"{{{{ bucket['{SECRET}'] }}}}", id="a literal equal to the secret is still redacted"),
    pytest.param("{{ buckets | map(attribute=secretAccessKey) | first + 1 }}", id="the secret as an attribute name"),
    pytest.param("{{ secretAccessKey }}{{ secretAccessKey * 10**6 }}", id="a size limit after echoing"),
    pytest.param("{{ secretAccessKey }}{{ 'x' * 60000 }}{{ 'y' * 60000 }}", id="output cut at the cap"),
    pytest.param("{{ secretAccessKey ~ bucket.__class__ }}", id="a sandbox refusal"),
    pytest.param("{% macro m(a) %}{{ a }}{{ a.nope }}{% endmacro %}{{ m(secretAccessKey) }}", id="inside a macro"),
]


@pytest.mark.parametrize("source", LEAKY)
def test_template_errors_never_carry_key_material(source: str) -> None:
    error = render_error(source)
    # What a log line, an event or `kopf` printing the traceback would show.
    shown = [str(error), repr(error), *traceback.format_exception(error)]
    for text in shown:
        for value in (SECRET, SECRET[::-1], ACCESS_KEY_ID):
            assert value not in text
    assert error.__cause__ is None
    assert error.__context__ is None


# --- properties --------------------------------------------------------------------------

ANY_SECRET = st.one_of(
    st.text(alphabet=string.printable, min_size=1),
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1),
)


@given(ANY_SECRET)
def test_default_preset_round_trips_any_secret(secret: str) -> None:
    data = render_secret_data(replace(KEY, secret_access_key=secret), SecretTemplate())
    assert data["secretAccessKey"] == secret


@given(ANY_SECRET)
def test_a_template_round_trips_any_secret(secret: str) -> None:
    assert render("{{ secretAccessKey }}", replace(KEY, secret_access_key=secret)) == secret


# --- Secret key names --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("bad/key", id="slash"),
        pytest.param("a b", id="space"),
        pytest.param("", id="empty"),
        pytest.param(".", id="dot"),
        pytest.param("..", id="dot-dot"),
        pytest.param("clé", id="non-ASCII"),
        pytest.param("k" * 254, id="longer than 253"),
    ],
)
def test_bad_secret_key_names_are_rejected(name: str) -> None:
    template = SecretTemplate(data={name: "{{ bucket }}"})
    for attempt in (lambda: validate_template(template), lambda: render_secret_data(KEY, template)):
        with pytest.raises(TemplateError, match="invalid Secret key name") as caught:
            attempt()
        assert caught.value.reason == TemplateError.INVALID_KEY


@pytest.mark.parametrize("name", ["a.b-c_D9", ".s3cfg", "rclone.conf", "k" * 253])
def test_good_secret_key_names_are_accepted(name: str) -> None:
    assert render("{{ bucket }}", name=name) == "media"


def test_a_native_name_that_is_not_a_valid_secret_key_is_rejected() -> None:
    key = replace(KEY, native={"B2 KEY": SECRET})
    with pytest.raises(TemplateError, match="invalid Secret key name") as caught:
        render_secret_data(key, SecretTemplate())
    assert SECRET not in str(caught.value)


# --- KeyMaterial -------------------------------------------------------------------------


def test_key_material_repr_has_no_secret() -> None:
    text = repr(KEY)
    assert SECRET not in text
    assert "B2_APPLICATION_KEY" not in text
    assert "media" in text


def test_key_material_from_an_issued_key() -> None:
    issued = IssuedKey(
        key_id="kid-1",
        key_name="st-x",
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET,
        not_after=datetime(2030, 1, 1, tzinfo=UTC),
        endpoint="https://s3.example.com",
        region="cn-bj",
        buckets=("b",),
        prefixes=("p/",),
        native={"B2_APPLICATION_KEY": SECRET},
    )
    key = KeyMaterial.from_issued("us3", issued)
    assert key.provider == "us3"
    assert (key.key_id, key.key_name, key.access_key_id, key.secret_access_key) == (
        "kid-1",
        "st-x",
        ACCESS_KEY_ID,
        SECRET,
    )
    assert (key.endpoint, key.region, key.buckets, key.prefixes) == ("https://s3.example.com", "cn-bj", ("b",), ("p/",))
    assert key.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert dict(key.native) == {"B2_APPLICATION_KEY": SECRET}
    with pytest.raises(TypeError):
        key.native["x"] = "y"  # type: ignore[index]
