"""The WebAuthn relying party (Level 2, via py_webauthn): options for the browser, and the checks
of what it sends back (README "Passkeys").

- RP ID: the host of AUTHSERVER_ISSUER; origin: the issuer's scheme://host[:port]. A browser on
  any other origin cannot produce an assertion we accept (clientDataJSON.origin and the RP ID hash
  in authenticatorData are both checked).
- Challenges: 32 random bytes each, single-use, CHALLENGE_TTL seconds, bound to the browser
  session (a random value kept in it, `session_binding`), to a purpose (register, second factor,
  passwordless) and, for registration and the second factor, to the user. The server keeps only a
  key derived from all of these in the shared cache; consuming it is one DELETE, which is true for
  exactly one caller, so a challenge cannot be answered twice, nor from another browser.
- Sign count (WebAuthn §7.2 step 21): when either the stored or the new count is non-zero, the
  new one must be greater; otherwise the authenticator may be cloned: refused and the credential
  flagged (and refused from then on). The new count is stored with one conditional UPDATE.
- User verification is required for passwordless sign-in (so it counts as two factors) and
  preferred otherwise; user presence is always required.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from authserver.conf import get_config
from authserver.counters import cache_guard, shared_cache
from branding.selectors import brand_get
from passkeys.models import Passkey

CHALLENGE_TTL = 120  # seconds from the options to the browser's answer
MAX_CREDENTIAL_JSON = 16_384  # characters of a browser's answer we read at all
BINDING_SESSION_KEY = "passkey_binding"

REGISTER = "register"
SECOND_FACTOR = "second_factor"
PASSWORDLESS = "passwordless"

# What each refusal reason means, for people (audit keeps the reason itself).
REASONS = {
    "malformed": _("The passkey’s answer could not be read."),
    "unknown_credential": _("This passkey is not registered for this account."),
    "challenge_mismatch": _("The passkey request expired or was already used."),
    "origin_mismatch": _("The passkey answered for another website."),
    "rp_id_mismatch": _("The passkey answered for another website."),
    "sign_count_regressed": _("This passkey may have been copied, so it was blocked."),
    "credential_flagged": _("This passkey was blocked because it may have been copied."),
    "user_not_verified": _("The passkey did not verify you (PIN or biometrics)."),
    "user_not_present": _("The passkey did not confirm you were present."),
    "user_handle_mismatch": _("This passkey is not registered for this account."),
    "bad_signature": _("The passkey’s signature is not valid."),
    "duplicate": _("This passkey is already registered."),
    "invalid": _("The passkey’s answer was not accepted."),
}


# What py_webauthn (and the CBOR/ASN.1 parsers under it) raise for input it cannot accept.
_BAD_INPUT = (WebAuthnException, ValueError, TypeError, KeyError, IndexError, AttributeError)


class PasskeyRefused(Exception):
    """An answer from the browser was not accepted; `reason` is a key of REASONS."""

    def __init__(self, reason: str, passkey: Passkey | None = None) -> None:
        super().__init__(REASONS.get(reason, REASONS["invalid"]))
        self.reason = reason
        self.passkey = passkey


@dataclass(frozen=True, slots=True)
class Asserted:
    passkey: Passkey
    user_verified: bool


def rp_id() -> str:
    return urlsplit(get_config().issuer).hostname or "localhost"


def rp_origin() -> str:
    parts = urlsplit(get_config().issuer)
    return f"{parts.scheme}://{parts.netloc}"


def session_binding(request: HttpRequest) -> str:
    """The random value that binds challenges to this browser's session (made on first use;
    it survives the session key's rotation at sign-in, which keeps the session's data)."""
    value = request.session.get(BINDING_SESSION_KEY)
    if not isinstance(value, str) or len(value) < 16:
        value = secrets.token_urlsafe(24)
        request.session[BINDING_SESSION_KEY] = value
    return value


def _challenge_key(purpose: str, binding: str, user_pk: int | None, challenge: bytes) -> str:
    material = f"{purpose}\x00{binding}\x00{user_pk or ''}\x00".encode() + challenge
    return "passkey:challenge:" + hashlib.sha256(material).hexdigest()


def challenge_issue(*, purpose: str, binding: str, user_pk: int | None) -> bytes:
    challenge = secrets.token_bytes(32)
    with cache_guard():
        shared_cache().set(_challenge_key(purpose, binding, user_pk, challenge), 1, CHALLENGE_TTL)
    return challenge


def challenge_consume(*, purpose: str, binding: str, user_pk: int | None, challenge: bytes) -> bool:
    """True for exactly one caller, and only for a challenge issued for this purpose, browser
    session and user that has not expired."""
    with cache_guard():
        return bool(shared_cache().delete(_challenge_key(purpose, binding, user_pk, challenge)))


def _transports(values) -> list[AuthenticatorTransport]:
    known = {t.value: t for t in AuthenticatorTransport}
    return [known[v] for v in values or [] if v in known]


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    return PublicKeyCredentialDescriptor(
        id=base64url_to_bytes(passkey.credential_id), transports=_transports(passkey.transports)
    )


def registration_options(*, user, binding: str) -> dict:
    options = generate_registration_options(
        rp_id=rp_id(),
        rp_name=brand_get().name,
        user_name=user.get_username(),
        user_id=user.public_id.bytes,
        user_display_name=user.get_full_name() or user.get_username(),
        challenge=challenge_issue(purpose=REGISTER, binding=binding, user_pk=user.pk),
        timeout=CHALLENGE_TTL * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[_descriptor(p) for p in Passkey.objects.filter(user=user)],
    )
    data = json.loads(options_to_json(options))
    data["extensions"] = {"credProps": True}  # tells us whether the credential is discoverable
    return data


def authentication_options(*, purpose: str, binding: str, user=None) -> dict:
    """Options for navigator.credentials.get(): for the second factor, the user's credentials;
    for passwordless sign-in, none (the authenticator offers its discoverable ones)."""
    allow = (
        [_descriptor(p) for p in Passkey.objects.filter(user=user, flagged_at__isnull=True)]
        if user is not None
        else []
    )
    options = generate_authentication_options(
        rp_id=rp_id(),
        challenge=challenge_issue(
            purpose=purpose, binding=binding, user_pk=user.pk if user is not None else None
        ),
        timeout=CHALLENGE_TTL * 1000,
        allow_credentials=allow,
        user_verification=UserVerificationRequirement.REQUIRED
        if user is None
        else UserVerificationRequirement.PREFERRED,
    )
    return json.loads(options_to_json(options))


def _reason(message: str) -> str:
    text = message.lower()
    for needle, reason in (
        ("origin", "origin_mismatch"),
        ("rp id", "rp_id_mismatch"),
        ("sign count", "sign_count_regressed"),
        ("not verified", "user_not_verified"),
        ("not present", "user_not_present"),
        ("signature", "bad_signature"),
        ("malformed", "malformed"),
    ):
        if needle in text:
            return reason
    return "invalid"


def _client_data_challenge(client_data_json: bytes) -> bytes:
    try:
        return parse_client_data_json(bytes(client_data_json)).challenge
    except Exception:  # noqa: BLE001 - any unreadable clientDataJSON is "malformed"
        raise PasskeyRefused("malformed") from None


def _parse(parser, credential_json: str):
    if not isinstance(credential_json, str) or not 0 < len(credential_json) <= MAX_CREDENTIAL_JSON:
        raise PasskeyRefused("malformed")
    try:
        return parser(credential_json)
    except _BAD_INPUT:
        raise PasskeyRefused("malformed") from None


def credential_owner(credential_json: str) -> Passkey | None:
    """The registered credential a browser's answer names (no check of the answer itself):
    so a refusal can be counted against its account."""
    try:
        credential = _parse(parse_authentication_credential_json, credential_json)
    except PasskeyRefused:
        return None
    return Passkey.objects.select_related("user").filter(credential_id=credential.id).first()


def assertion_verify(*, credential_json: str, purpose: str, binding: str, user=None) -> Asserted:
    """Check an answer of navigator.credentials.get() (WebAuthn §7.2) for `user` (second
    factor), or for whoever owns the credential (passwordless: `user` None). PasskeyRefused."""
    credential = _parse(parse_authentication_credential_json, credential_json)
    passkey = Passkey.objects.select_related("user").filter(credential_id=credential.id).first()
    if passkey is None or (user is not None and passkey.user_id != user.pk):
        raise PasskeyRefused("unknown_credential")
    if user is None and (
        credential.response.user_handle is None
        or bytes(credential.response.user_handle) != passkey.user.public_id.bytes
    ):
        raise PasskeyRefused("user_handle_mismatch", passkey)
    challenge = _client_data_challenge(credential.response.client_data_json)
    if not challenge_consume(
        purpose=purpose,
        binding=binding,
        user_pk=user.pk if user is not None else None,
        challenge=challenge,
    ):
        raise PasskeyRefused("challenge_mismatch", passkey)
    if passkey.flagged_at is not None:
        raise PasskeyRefused("credential_flagged", passkey)
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id(),
            expected_origin=rp_origin(),
            credential_public_key=bytes(passkey.public_key),
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=user is None,
        )
    except _BAD_INPUT as exc:
        reason = _reason(str(exc))
        if reason == "sign_count_regressed":
            passkey_flag(passkey)
        raise PasskeyRefused(reason, passkey) from None
    now = timezone.now()
    new = verified.new_sign_count
    moved = Passkey.objects.filter(
        Q(sign_count__lt=new) if new > 0 else Q(sign_count=0),
        pk=passkey.pk,
        flagged_at__isnull=True,
    ).update(sign_count=new, last_used_at=now)
    if not moved:  # another answer with a count at least as high won meanwhile
        passkey_flag(passkey)
        raise PasskeyRefused("sign_count_regressed", passkey)
    passkey.sign_count, passkey.last_used_at = new, now
    return Asserted(passkey=passkey, user_verified=verified.user_verified)


def passkey_flag(passkey: Passkey) -> None:
    Passkey.objects.filter(pk=passkey.pk, flagged_at__isnull=True).update(flagged_at=timezone.now())


def _cred_props_rk(credential_json: str) -> bool | None:
    try:
        rk = json.loads(credential_json)["clientExtensionResults"]["credProps"]["rk"]
    except (ValueError, KeyError, TypeError):
        return None
    return rk if isinstance(rk, bool) else None


def registration_verify(*, user, credential_json: str, binding: str, name: str) -> Passkey:
    """Check an answer of navigator.credentials.create() (WebAuthn §7.1, attestation "none")
    and store the credential. PasskeyRefused."""
    credential = _parse(parse_registration_credential_json, credential_json)
    challenge = _client_data_challenge(credential.response.client_data_json)
    if not challenge_consume(
        purpose=REGISTER, binding=binding, user_pk=user.pk, challenge=challenge
    ):
        raise PasskeyRefused("challenge_mismatch")
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id(),
            expected_origin=rp_origin(),
            require_user_verification=False,
        )
    except _BAD_INPUT as exc:
        raise PasskeyRefused(_reason(str(exc))) from None
    passkey = Passkey(
        user=user,
        name=name,
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=[t.value for t in credential.response.transports or []],
        aaguid=verified.aaguid,
        discoverable=_cred_props_rk(credential_json),
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
    )
    try:
        with transaction.atomic():
            passkey.save(force_insert=True)
    except IntegrityError:
        raise PasskeyRefused("duplicate") from None
    return passkey
