"""Bringing an installation to life: schema, the configured sites, the demo users, the demo signing CA."""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from telerad import clock
from telerad.config import Config
from telerad.db import upgrade
from telerad.sites import sync_sites
from telerad.users import User, add_user


def prepare(config: Config, sessions: sessionmaker) -> dict[str, str]:
    """Migrate the database, make the demo CA (``signing.demo_ca``), sync the sites, create missing users.

    Returns the generated passwords of the users created now (name → password);
    they are also appended to ``demo-passwords.txt`` in the data directory,
    readable by the owner only.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    if config.signing.demo_ca:
        demo_ca(config)
    upgrade(config.database_url)
    created: dict[str, str] = {}
    with sessions() as session, session.begin():
        sync_sites(session, config)
        existing = set(session.scalars(select(User.name)))
        for entry in config.users:
            if entry.name in existing:
                continue
            password = secrets.token_urlsafe(9)
            add_user(
                session, entry.name, entry.role, entry.site, password, entry.modalities, entry.display_name,
                expert=entry.expert,
            )
            created[entry.name] = password
    if created:
        path = config.data_dir / "demo-passwords.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.writelines(f"{name}\t{password}\n" for name, password in created.items())
    return created


def demo_ca(config: Config) -> tuple[Path, Path]:
    """The demo CA's certificate and private key (PEM files in ``<data_dir>/ca/``), made on the first call.

    A self-signed RSA-2048/SHA-256 CA (RFC 5280: basic constraints CA, key usage keyCertSign and cRLSign) that
    certifies readers with no certificate from the hospital's CA; for demonstration only. It is backdated five
    years, so records signed under an injected or skewed clock still verify. The key file is readable by its owner
    only (mode 600). Both are written in a private folder renamed into place: processes preparing at once agree on
    one CA.
    """
    folder = config.data_dir / "ca"
    certificate_path, key_path = folder / "demo-ca.pem", folder / "demo-ca-key.pem"
    if certificate_path.is_file():
        return certificate_path, key_path
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Telerad demo"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"Telerad demo CA {uuid.uuid4().hex[:8]} (not for clinical use)"),
    ])
    now = clock.now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=5 * 365))
        .not_valid_after(now + timedelta(days=30 * 365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    staging = config.data_dir / f".ca-{uuid.uuid4().hex}"
    staging.mkdir(mode=0o700)
    try:
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        for path, data, mode in (
            (staging / key_path.name, key_pem, 0o600),
            (staging / certificate_path.name, certificate.public_bytes(serialization.Encoding.PEM), 0o644),
        ):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        os.rename(staging, folder)
    except OSError:
        if not certificate_path.is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return certificate_path, key_path
