"""A development signing chain: a local CA and a leaf it issued, ES256, the shape c2pa-rs accepts.

c2pa-rs refuses a self-signed signing certificate, so even development needs two certificates: a CA
(basicConstraints CA, keyCertSign, a subject key identifier) and a leaf (digitalSignature, the
emailProtection extended key usage that C2PA's default trust configuration accepts for signers, subject and
authority key identifiers). Nobody but this installation trusts that CA: manifests it signs validate as
"Trusted" only against its own CA file, and as "Valid" (signature fine, signer unknown) anywhere else.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

CA_FILE = "dev-ca.pem"
CHAIN_FILE = "dev-signer-chain.pem"
KEY_FILE = "dev-signer-key.pem"


@dataclass(frozen=True)
class DevChain:
    ca_path: Path  # the trust anchor (give it to the verifier)
    chain_path: Path  # leaf + CA, what the signer embeds
    key_path: Path  # the leaf's private key (PKCS#8 PEM, mode 0600)
    created: bool  # False: the files were already there


def ensure_dev_chain(directory: Path, organisation: str = "AudioSeal Studio (development)") -> DevChain:
    """The chain under ``directory``, generated once (an existing, complete set of files is reused)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    paths = DevChain(directory / CA_FILE, directory / CHAIN_FILE, directory / KEY_FILE, created=False)
    if all(p.exists() for p in (paths.ca_path, paths.chain_path, paths.key_path)):
        return paths

    now = datetime.datetime.now(datetime.UTC)
    start = now - datetime.timedelta(minutes=5)  # tolerate small clock differences between machines

    def name(common_name: str) -> x509.Name:
        return x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        ])

    def usage(*, signing: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=signing, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=not signing, crl_sign=not signing,
            encipher_only=False, decipher_only=False,
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("AudioSeal Studio development CA (not trusted)")
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(signing=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(name("AudioSeal Studio development signer"))
        .issuer_name(ca_name).public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(signing=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths.key_path.write_bytes(b"")
    paths.key_path.chmod(0o600)
    paths.key_path.write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    paths.chain_path.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    paths.ca_path.write_bytes(ca.public_bytes(pem))  # written last: its presence means the set is complete
    return DevChain(paths.ca_path, paths.chain_path, paths.key_path, created=True)
