"""WebAuthn ceremonies over ``webauthn`` (py_webauthn 3.x): options and every response check.

No CBOR, COSE, attestation or signature code of the project's own: the library
parses and verifies; this adapter only chooses its arguments and turns any
failure, malformed input included, into ``WebAuthnInvalidError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    options_to_json_dict,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from identity.application.ports import (
    CredentialDescriptor,
    NewCredential,
    PresentedAssertion,
    VerifiedAssertion,
    WebAuthnCeremonies,
)
from identity.domain.passkeys import RelyingParty, WebAuthnInvalidError, reported_transports

# What registration offers (and so accepts): ES256, EdDSA, RS256.
OFFERED_ALGORITHMS = [
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
]
MAX_CREDENTIAL_ID_BYTES = 1023  # WebAuthn L3 §5.8.3


def _descriptor(credential: CredentialDescriptor) -> PublicKeyCredentialDescriptor:
    transports = []
    for value in credential.transports:
        try:
            transports.append(AuthenticatorTransport(value))
        except ValueError:
            continue
    return PublicKeyCredentialDescriptor(id=credential.id, transports=transports or None)


def _check_client_data(client_data_json: bytes) -> None:
    """WebAuthn L3 §7.1 step 10 / §7.2 step 13: ``crossOrigin`` absent or false (the
    library leaves this check to the relying party)."""
    client_data = parse_client_data_json(client_data_json)
    if client_data.cross_origin:
        raise WebAuthnInvalidError("cross-origin ceremony")


class PyWebAuthnCeremonies(WebAuthnCeremonies):
    def creation_options(
        self,
        rp: RelyingParty,
        *,
        user_handle: bytes,
        user_name: str,
        display_name: str,
        challenge: bytes,
        exclude: list[CredentialDescriptor],
        timeout_ms: int,
    ) -> dict[str, object]:
        options = generate_registration_options(
            rp_id=rp.id,
            rp_name=rp.name,
            user_id=user_handle,
            user_name=user_name,
            user_display_name=display_name,
            challenge=challenge,
            timeout=timeout_ms,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                require_resident_key=True,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=[_descriptor(item) for item in exclude],
            supported_pub_key_algs=OFFERED_ALGORITHMS,
        )
        return dict(options_to_json_dict(options))

    def request_options(
        self,
        rp: RelyingParty,
        *,
        challenge: bytes,
        allow: list[CredentialDescriptor],
        timeout_ms: int,
    ) -> dict[str, object]:
        options = generate_authentication_options(
            rp_id=rp.id,
            challenge=challenge,
            timeout=timeout_ms,
            allow_credentials=[_descriptor(item) for item in allow],
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        json = dict(options_to_json_dict(options))
        json.setdefault("allowCredentials", [])
        return json

    def verify_registration(
        self, credential: Mapping[str, object], *, rp: RelyingParty, challenge: bytes
    ) -> NewCredential:
        try:
            parsed: RegistrationCredential = parse_registration_credential_json(dict(credential))
            if len(parsed.raw_id) > MAX_CREDENTIAL_ID_BYTES:
                raise WebAuthnInvalidError("credential id too long")
            _check_client_data(parsed.response.client_data_json)
            verified = verify_registration_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=rp.id,
                expected_origin=list(rp.origins),
                require_user_presence=True,
                require_user_verification=True,
                supported_pub_key_algs=OFFERED_ALGORITHMS,
            )
        except WebAuthnInvalidError:
            raise
        except Exception as error:
            # Anything the library raises (its own errors, or a decoding error on
            # bad base64 or truncated CBOR) is a response that does not verify.
            raise WebAuthnInvalidError(type(error).__name__) from None
        transports = [item.value for item in parsed.response.transports or []]
        return NewCredential(
            credential_id=verified.credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            transports=reported_transports(transports),
            backup_eligible=verified.credential_device_type.value == "multi_device",
            backed_up=verified.credential_backed_up,
            aaguid=verified.aaguid,
        )

    def read_assertion(self, credential: Mapping[str, object]) -> PresentedAssertion:
        try:
            parsed: AuthenticationCredential = parse_authentication_credential_json(
                dict(credential)
            )
        except Exception as error:
            raise WebAuthnInvalidError(type(error).__name__) from None
        if not parsed.raw_id or len(parsed.raw_id) > MAX_CREDENTIAL_ID_BYTES:
            raise WebAuthnInvalidError("bad credential id")
        return PresentedAssertion(
            credential_id=parsed.raw_id,
            user_handle=parsed.response.user_handle,
            parsed=parsed,
        )

    def verify_assertion(
        self,
        assertion: PresentedAssertion,
        *,
        rp: RelyingParty,
        challenge: bytes,
        public_key: bytes,
    ) -> VerifiedAssertion:
        parsed: Any = assertion.parsed
        try:
            _check_client_data(parsed.response.client_data_json)
            verified = verify_authentication_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=rp.id,
                expected_origin=list(rp.origins),
                credential_public_key=public_key,
                # The counter is judged by the caller, so that a regression can be
                # told from other failures and recorded.
                credential_current_sign_count=0,
                require_user_verification=True,
            )
        except WebAuthnInvalidError:
            raise
        except Exception as error:
            raise WebAuthnInvalidError(type(error).__name__) from None
        return VerifiedAssertion(
            sign_count=verified.new_sign_count, backed_up=verified.credential_backed_up
        )
