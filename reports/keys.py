"""Readers' signing keys: one key pair per reader, the private key encrypted under the reader's own password.

A reader's key pair is made at their first signature: RSA-2048 (with SHA-256, what every PDF reader validates),
the private key kept as encrypted PKCS#8 (RFC 5958, ``BestAvailableEncryption``: PBES2 with AES-256) under the
password the reader types to sign, so only the reader can use it — the "sole control" that China's Electronic
Signature Law (电子签名法, art. 13) asks of a reliable electronic signature. The certificate (RFC 5280) is issued
by the hospital's CA when ``signing.ca_certificate`` and ``signing.ca_key`` are configured, else by the demo CA of
the data directory (:func:`telerad.provisioning.demo_ca`); a reader may instead bring a key and certificate the
hospital's CA issued, as a PKCS#12 file (RFC 7292, :func:`import_pkcs12`).

A key whose password no longer opens it (the reader's password changed) is revoked and a new pair is made: the
old signatures stay valid, as they were made while the key was in force. At most one key per reader is in force.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from pyhanko.sign.signers import SimpleSigner
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError, ValidationError
from pyhanko_certvalidator.registry import SimpleCertificateStore
from sqlalchemy import select
from sqlalchemy.orm import Session

from reports.models import SigningKey
from telerad import audit, clock
from telerad.config import Config
from telerad.provisioning import demo_ca
from telerad.users import User

#: The key usages a certificate must assert (either) to sign reports (RFC 5280 4.2.1.3): PDF validators such as
#: pyHanko's want one of them asserted, so a certificate without the extension is refused too.
SIGNING_USAGES = ("digital_signature", "content_commitment")

T = TypeVar("T")

def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one of pyHanko's coroutines to completion from synchronous code.

    In a thread that already runs an event loop (an asyncio server, or Playwright's sync API in the tests),
    ``asyncio.run`` refuses, so the coroutine runs on a fresh loop in a short-lived thread instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyhanko") as pool:
        return pool.submit(asyncio.run, coroutine).result()



class WrongPassword(Exception):
    """The password given to sign is not the reader's: nothing was signed and no key was touched."""


class SigningKeyError(ValueError):
    """A key or certificate cannot be made, imported or used as asked; the message says why."""


@dataclass(frozen=True)
class ReaderSigner:
    """A reader's unlocked private key with its certificate and the chain up to the CA (root included)."""

    key_id: int
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate (DER), hex."""
        return fingerprint(self.certificate)

    @property
    def algorithm(self) -> str:
        """How detached signatures are made: CMS (RFC 5652) with SHA-256 and the key's algorithm."""
        return "cms-rsa-sha256" if isinstance(self.private_key, rsa.RSAPrivateKey) else "cms-ecdsa-sha256"

    def cms_signer(self) -> SimpleSigner:
        """pyHanko's signer for this key: CMS signatures carrying the certificate and its chain."""
        key = self.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return SimpleSigner(
            signing_cert=to_asn1(self.certificate),
            signing_key=asn1_keys.PrivateKeyInfo.load(key),
            cert_registry=SimpleCertificateStore.from_certs([to_asn1(issuer) for issuer in self.chain]),
        )


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of a certificate's DER encoding, hex (what ``SigningKey.fingerprint`` holds)."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def to_asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
    """The same certificate for pyHanko (asn1crypto)."""
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def trust_roots(config: Config) -> list[x509.Certificate]:
    """The CAs whose certificates Telerad accepts: the hospital's CA (if configured) and the demo CA (if enabled)."""
    roots = []
    if config.signing.ca_certificate is not None:
        roots.extend(_read_certificates(config.signing.ca_certificate, "signing.ca_certificate"))
    if config.signing.demo_ca:
        roots.extend(_read_certificates(demo_ca(config)[0], "the demo CA certificate"))
    return roots


def certificate_problem(
    certificate: x509.Certificate, chain: list[x509.Certificate], roots: list[x509.Certificate], moment: datetime
) -> str | None:
    """Why ``certificate`` is not one Telerad trusts for signing at ``moment``, or ``None`` when it is.

    Builds and validates the path to one of ``roots`` (RFC 5280 section 6, pyhanko-certvalidator; no revocation
    sources are fetched) and checks the key usage asserts signing (:data:`SIGNING_USAGES`).
    """
    context = ValidationContext(trust_roots=[to_asn1(root) for root in roots], moment=moment)
    validator = CertificateValidator(
        to_asn1(certificate), intermediate_certs=[to_asn1(other) for other in chain], validation_context=context
    )
    try:
        run_coroutine(validator.async_validate_path())
    except PathBuildingError:
        return f"not issued by a trusted CA (issuer {certificate.issuer.rfc4514_string()!r})"
    except (PathValidationError, ValidationError) as exc:
        return str(exc)
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "it has no key usage extension (digitalSignature or nonRepudiation is needed to sign)"
    if not any(getattr(usage, name) for name in SIGNING_USAGES):
        return "its key usage allows neither digitalSignature nor nonRepudiation"
    return None


def signer_for(session: Session, config: Config, user: User, password: str) -> ReaderSigner:
    """The reader's signer, unlocked with ``password`` (their own): the key in force, or a new one made now.

    Raises :class:`WrongPassword` when ``password`` is not the reader's (nothing is written) and
    :class:`SigningKeyError` when a key is needed but no CA may issue its certificate.
    """
    if not user.check_password(password):
        raise WrongPassword(f"wrong password for {user.name}: the report was not signed")
    session.execute(select(User.id).where(User.id == user.id).with_for_update())  # one key at a time per reader
    current = active_key(session, user)
    if current is not None:
        try:
            private_key = serialization.load_pem_private_key(current.private_key.encode(), password.encode())
        except ValueError:
            retire(session, current, user.name, "the reader's password changed: the key cannot be opened")
        else:
            return _signer(current, private_key)  # type: ignore[arg-type]
    return _signer(*_new_key(session, config, user, password))


def active_key(session: Session, user: User) -> SigningKey | None:
    """The reader's key in force (not revoked), if any."""
    return session.scalar(
        select(SigningKey)
        .where(SigningKey.user_id == user.id, SigningKey.revoked_at.is_(None))
        .order_by(SigningKey.id.desc())
        .limit(1)
    )


def retire(session: Session, key: SigningKey, actor: str, reason: str) -> None:
    """Revoke ``key`` from now on (signatures made before stay valid)."""
    key.revoked_at = clock.now()
    audit.record(session, actor, "signing_key.revoked", "signing_key", str(key.id), reason=reason)


def import_pkcs12(
    session: Session, config: Config, user: User, data: bytes, pkcs12_password: str, password: str
) -> SigningKey:
    """Make a PKCS#12 file (RFC 7292) the hospital's CA issued to ``user`` their signing key from now on.

    ``pkcs12_password`` opens the file; the key is then stored encrypted under ``password``, the reader's own
    (checked: :class:`WrongPassword`). The certificate must match the key, allow signing and lead to a trusted CA
    (:func:`trust_roots`), else :class:`SigningKeyError` says which; nothing is written then. The key in force
    before is revoked.
    """
    if not user.check_password(password):
        raise WrongPassword(f"wrong password for {user.name}: the key was not imported")
    try:
        bundle = pkcs12.load_pkcs12(data, pkcs12_password.encode() or None)
    except ValueError:
        raise SigningKeyError("not a PKCS#12 file, or its password is wrong") from None
    if bundle.key is None or bundle.cert is None:
        raise SigningKeyError("the PKCS#12 file must hold a private key and its certificate")
    if not isinstance(bundle.key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise SigningKeyError("the PKCS#12 key must be RSA or ECDSA")
    certificate = bundle.cert.certificate
    if bundle.key.public_key() != certificate.public_key():
        raise SigningKeyError("the PKCS#12 certificate does not belong to its private key")
    roots = trust_roots(config)
    chain = [extra.certificate for extra in bundle.additional_certs]
    problem = certificate_problem(certificate, chain, roots, clock.now())
    if problem is not None:
        raise SigningKeyError(f"the PKCS#12 certificate cannot sign reports: {problem}")
    chain += [root for root in roots if root not in chain and _issued(certificate, chain, root)]
    session.execute(select(User.id).where(User.id == user.id).with_for_update())
    current = active_key(session, user)
    if current is not None:
        retire(session, current, user.name, "replaced by a key imported from the hospital's CA")
    row = _store(session, user, bundle.key, certificate, chain, password)
    audit.record(session, user.name, "signing_key.imported", "signing_key", str(row.id), fingerprint=row.fingerprint,
                 issuer=certificate.issuer.rfc4514_string())
    return row


def _signer(row: SigningKey, private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> ReaderSigner:
    certificate, *chain = x509.load_pem_x509_certificates(row.certificate.encode())
    return ReaderSigner(row.id, private_key, certificate, tuple(chain))


def _new_key(
    session: Session, config: Config, user: User, password: str
) -> tuple[SigningKey, rsa.RSAPrivateKey]:
    """A new RSA-2048 key pair for ``user`` with a certificate from the configured CA, stored encrypted."""
    issuer_certificate, issuer_key = _issuer(config)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = clock.now()
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, user.site.name),
        x509.NameAttribute(NameOID.USER_ID, user.name),
        x509.NameAttribute(NameOID.COMMON_NAME, user.display_name or user.name),
    ])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(min(now + timedelta(days=config.signing.certificate_days),
                             issuer_certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=True, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    row = _store(session, user, key, certificate, [issuer_certificate], password)
    audit.record(session, user.name, "signing_key.created", "signing_key", str(row.id), fingerprint=row.fingerprint,
                 issuer=issuer_certificate.subject.rfc4514_string())
    return row, key


def _store(
    session: Session,
    user: User,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    certificate: x509.Certificate,
    chain: list[x509.Certificate],
    password: str,
) -> SigningKey:
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode()),
    )
    pem = b"".join(item.public_bytes(serialization.Encoding.PEM) for item in (certificate, *chain))
    row = SigningKey(
        user_id=user.id, private_key=encrypted.decode(), certificate=pem.decode(),
        fingerprint=fingerprint(certificate), created_at=clock.now(),
    )
    session.add(row)
    session.flush()
    return row


def _issuer(config: Config) -> tuple[x509.Certificate, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey]:
    """The CA that issues readers' certificates here: the hospital's (with its key) or the demo CA."""
    if config.signing.ca_key is not None and config.signing.ca_certificate is not None:
        certificate_path, key_path, setting = config.signing.ca_certificate, config.signing.ca_key, "signing.ca_key"
        password = config.signing.ca_key_password.encode() or None
    elif config.signing.demo_ca:
        (certificate_path, key_path), setting, password = demo_ca(config), "the demo CA key", None
    else:
        raise SigningKeyError(
            "no CA may issue this reader's certificate: import their PKCS#12 file from the hospital's CA, "
            "or configure signing.ca_key (or signing.demo_ca)"
        )
    certificate = _read_certificates(certificate_path, "signing.ca_certificate")[0]
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError(f"{setting}: cannot read the CA's private key from {key_path}: {exc}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)) or (
        key.public_key() != certificate.public_key()
    ):
        raise SigningKeyError(f"{setting}: {key_path} is not the key of the CA certificate {certificate_path}")
    return certificate, key


def _read_certificates(path: Path, setting: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"{setting}: cannot read a PEM certificate from {path}: {exc}") from None


def _issued(certificate: x509.Certificate, chain: list[x509.Certificate], root: x509.Certificate) -> bool:
    """Whether ``root`` issued ``certificate`` or the top of ``chain``."""
    return (chain[-1] if chain else certificate).issuer == root.subject
