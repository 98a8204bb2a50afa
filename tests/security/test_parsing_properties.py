"""Property tests (hypothesis) of the parsers every request goes through: whatever the input,
they answer with the protocol's own error and nothing else (no TypeError, UnicodeError,
RecursionError, ... which would surface as a 500). In process (Django's RequestFactory and test
client): these run thousands of inputs, which HTTP against gunicorn would make too slow; the
HTTP battery covers the same endpoints with hand-picked hostile values.

Runs are deterministic (`derandomize=True`: the examples are derived from each test's source) and
bounded (`max_examples`), so a failure reproduces and the suite time stays fixed.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from urllib.parse import quote_plus

import pytest
from authlib.oauth2.rfc6749 import InvalidClientError
from django.http import QueryDict
from django.test import Client as HttpClient
from django.test import RequestFactory
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from accounts.network import client_ip, ip_parse
from oauth.client_auth import _basic_credentials
from oauth.protocol import BadRequest, form_parameters
from oauth.token_lookup import token_find
from tokens.authentication import AccessTokenAuthentication
from tokens.keys import active_signing_key
from tokens.verification import TokenInvalid, access_token_verify

PROPERTY = hsettings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,  # nothing to replay: the examples are the same on every run
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FEW = hsettings(PROPERTY, max_examples=60)

factory = RequestFactory()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
header_dicts = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["RS256", "none", "HS256", "ES256", "PS256", ""]) | st.text(),
        "typ": st.sampled_from(["at+jwt", "JWT", "application/at+jwt"]) | json_values,
        "kid": st.text(max_size=60) | json_values,
        "jku": st.text(max_size=30),
        "crit": json_values,
    },
)


@st.composite
def jwt_shaped(draw) -> str:
    """Three base64url segments: random header and payload JSON, random signature bytes; often
    with the server's real kid and alg, so the input reaches signature and claim checks."""
    header = draw(header_dicts)
    if draw(st.booleans()):
        key = active_signing_key()
        header.update(kid=key.kid, alg=key.alg, typ="at+jwt")
    payload = draw(
        json_values
        | st.dictionaries(
            st.sampled_from(["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "client_id"]),
            json_values,
        )
    )
    signature = draw(st.binary(max_size=300))
    raw = draw(st.booleans())
    head = _b64(json.dumps(header).encode()) if not raw else _b64(draw(st.binary(max_size=80)))
    return f"{head}.{_b64(json.dumps(payload).encode())}.{_b64(signature)}"


any_token = (
    st.text(max_size=300)
    | st.binary(max_size=300)
    | jwt_shaped()
    | st.text(alphabet="abcAB012-_.=", max_size=400)
)


@pytest.mark.django_db
@PROPERTY
@given(token=any_token)
def test_access_token_verify_raises_only_token_invalid(token):
    """RFC 6750 §3.1 / RFC 8725 §2.2: `access_token_verify` on any string or bytes returns claims
    or raises TokenInvalid, nothing else (the caller turns it into 401 invalid_token)."""
    try:
        claims = access_token_verify(token)
    except TokenInvalid as exc:
        assert isinstance(exc.reason, str) and exc.reason
    else:  # only a token really signed by us can get here, and none is generated
        pytest.fail(f"accepted a generated token: {claims!r}")


def _latin1(value) -> bool:
    """WSGI delivers header values as latin-1 text (PEP 3333): nothing else can arrive."""
    try:
        if not isinstance(value, str):
            return False
        value.encode("latin-1")
        return True
    except UnicodeEncodeError:
        return False


@pytest.mark.django_db
@PROPERTY
@given(
    header=st.text(st.characters(max_codepoint=255), max_size=200)
    | st.builds(lambda t: "Bearer " + t, any_token.filter(_latin1))
)
def test_bearer_header_parser_raises_only_invalid_token(header):
    """RFC 6750 §2.1 and §3: the DRF authentication on any Authorization header either does not
    apply (None: another scheme, no header) or raises AuthenticationFailed (invalid_token)."""
    request = Request(factory.get("/api/v1/me", HTTP_AUTHORIZATION=header))
    try:
        result = AccessTokenAuthentication().authenticate(request)
    except AuthenticationFailed as exc:
        assert exc.get_codes() == "invalid_token"
    else:
        assert result is None


@pytest.mark.django_db
@PROPERTY
@given(value=st.text(max_size=200) | st.text(alphabet="abcXYZ019-_", min_size=20, max_size=100))
def test_refresh_token_lookup_never_raises(value):
    """Refresh-token format check (RFC 6749 §10.10: 256-bit values, digests only): `token_find`,
    used by revocation and introspection, returns None for anything this server did not issue."""
    assert token_find(value) is None


@pytest.mark.django_db
@FEW
@given(body=json_values)
def test_refresh_api_answers_any_json_with_the_protocols_errors(body):
    """README "First-party API": POST /api/v1/auth/refresh with any JSON body answers 400
    invalid_request or 401 invalid_grant, with the `{"error", "error_description"}` shape."""
    response = HttpClient().post(
        "/api/v1/auth/refresh", json.dumps({"refresh_token": body}), content_type="application/json"
    )
    assert response.status_code in (400, 401), response.content
    assert response.json()["error"] in ("invalid_request", "invalid_grant")


@PROPERTY
@given(
    raw=st.text(max_size=80)
    | st.ip_addresses().map(str)
    | st.builds(
        lambda ip, port: f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}",
        st.ip_addresses(),
        st.integers(0, 70000).map(str),
    )
)
def test_ip_parse_returns_an_address_or_none(raw):
    """README "Client IP": `ip_parse` on any text returns an IP address or None, never raises;
    an IPv4-mapped IPv6 address comes back as IPv4."""
    address = ip_parse(raw)
    assert address is None or isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)
    if isinstance(address, ipaddress.IPv6Address):
        assert address.ipv4_mapped is None


hops = st.lists(st.ip_addresses().map(str) | st.text(max_size=30), max_size=40)


@PROPERTY
@given(
    peer=st.ip_addresses().map(str) | st.text(max_size=20),
    forwarded=hops,
    trusted=st.sampled_from(["", "127.0.0.1", "10.0.0.0/8,127.0.0.1", "::1,127.0.0.0/8"]),
)
def test_client_ip_under_any_forwarded_for(settings, peer, forwarded, trusted):
    """CVE-2024-47070 / README "Client IP": `client_ip` with any X-Forwarded-For never raises and
    returns "" or an address; with an untrusted peer it is the peer, whatever the header says."""
    settings.AUTHSERVER_TRUSTED_PROXIES = [t for t in trusted.split(",") if t]
    request = factory.get("/", REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=", ".join(forwarded))
    result = client_ip(request)
    assert result == "" or ip_parse(result) is not None
    parsed = ip_parse(peer)
    if parsed is None:
        assert result == ""
    elif not trusted:
        assert result == str(parsed)


@pytest.mark.django_db
@PROPERTY
@given(
    body=st.binary(max_size=400) | st.text(max_size=200).map(str.encode),
    content_type=st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=latin-1",
            "Application/X-WWW-Form-URLencoded ; charset=utf-8",
            "application/json",
            "multipart/form-data; boundary=x",
            "text/plain",
            "",
        ]
    ),
    query=st.sampled_from(["", "?code=x", "?a"]),
)
def test_form_parameters_accept_a_clean_form_or_raise_bad_request(body, content_type, query):
    """RFC 6749 §3.2 and README "Bad input": `form_parameters` on any body returns a form whose
    keys and values are single and free of control characters, or raises BadRequest (400/413)."""
    # generic(): the bytes go on the wire as they are (post() would re-encode them).
    request = factory.generic("POST", "/oauth/token" + query, data=body, content_type=content_type)
    try:
        form = form_parameters(request)
    except BadRequest as exc:
        assert exc.status in (400, 413)
        return
    assert isinstance(form, QueryDict)
    for key in form:
        values = form.getlist(key)
        assert len(values) == 1
        assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in key + values[0])


@pytest.mark.django_db
@PROPERTY
@given(
    key=st.text(min_size=1, max_size=10).filter(lambda k: k.isprintable()),
    value=st.text(max_size=20),
    control=st.sampled_from([chr(c) for c in (*range(0x20), 0x7F)]),
    where=st.sampled_from(["key", "value"]),
)
def test_any_control_character_is_refused(key, value, control, where):
    """README "Bad input": a C0 control character or DEL anywhere in a parameter name or value is
    invalid_request."""
    if where == "key":
        key = key + control
    else:
        value = control + value
    body = f"{quote_plus(key)}={quote_plus(value)}".encode()
    request = factory.post(
        "/oauth/token", data=body, content_type="application/x-www-form-urlencoded"
    )
    with pytest.raises(BadRequest):
        form_parameters(request)


basic_headers = (
    st.text(max_size=120)
    | st.builds(lambda b: "Basic " + base64.b64encode(b).decode(), st.binary(max_size=120))
    | st.builds(lambda t: "Basic " + t, st.text(max_size=120))
    | st.builds(lambda t: "bAsIc  " + t, st.text(alphabet="QWERTYabc123+/=", max_size=80))
)


@PROPERTY
@given(header=basic_headers)
def test_basic_credentials_parse_or_fail_as_invalid_client(header):
    """RFC 6749 §2.3.1: any Authorization header is not Basic (None), two non-empty
    credentials, or invalid_client (401); never another exception."""
    try:
        parsed = _basic_credentials(header)
    except InvalidClientError as exc:
        assert exc.status_code == 401
        return
    if parsed is not None:
        client_id, secret = parsed
        assert isinstance(client_id, str) and isinstance(secret, str)


@PROPERTY
@given(client_id=st.text(min_size=1, max_size=40), secret=st.text(min_size=1, max_size=40))
def test_basic_credentials_round_trip(client_id, secret):
    """RFC 6749 §2.3.1: credentials form-urlencoded then Base64-encoded by the client decode to
    exactly what was sent, colons and non-ASCII included."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    header = "Basic " + base64.b64encode(raw).decode()
    if len(header) - 6 > 512:
        return
    assert _basic_credentials(header) == (client_id, secret)


@pytest.mark.django_db
@FEW
@given(
    body=st.binary(max_size=300),
    authorization=basic_headers | st.none(),
    path=st.sampled_from(["/oauth/token", "/oauth/revoke", "/oauth/introspect"]),
)
def test_back_channel_endpoints_answer_any_body_with_an_oauth_error(body, authorization, path):
    """RFC 6749 §5.2 / RFC 7009 §2.2.1 / RFC 7662 §2.3: token, revocation and introspection with
    any body and any Authorization header answer 4xx JSON `{"error": ...}` with
    `Cache-Control: no-store`, never a 500."""
    extra = {}
    if authorization is not None:
        try:
            authorization.encode("latin-1")
        except UnicodeEncodeError:
            return  # not deliverable as an HTTP header
        extra["HTTP_AUTHORIZATION"] = authorization
    response = HttpClient().generic(
        "POST", path, data=body, content_type="application/x-www-form-urlencoded", **extra
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:200])
    assert response["Cache-Control"] == "no-store"
    assert "error" in response.json()
