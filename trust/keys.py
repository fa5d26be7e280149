"""A party's keys: Ed25519 to sign, X25519 to be encrypted to, kept in a private key directory, and their public
halves as Multikey strings (the W3C Controlled Identifiers encoding), so the registry's RDF names them portably.

>>> keys = generate_keys()
>>> text = encode_multikey(keys.signing.public_key())
>>> text.startswith("z6Mk") and decode_signing_key(text) == keys.signing.public_key()
True
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import base58
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

__all__ = [
    "ENCRYPTION_KEY_FILE",
    "SIGNING_KEY_FILE",
    "KeyFormatError",
    "PartyKeys",
    "decode_encryption_key",
    "decode_multikey",
    "decode_signing_key",
    "encode_multikey",
    "generate_keys",
    "load_keys",
    "save_keys",
]

SIGNING_KEY_FILE = "signing.pem"
ENCRYPTION_KEY_FILE = "encryption.pem"

# multicodec headers (unsigned varints) of the Multikey public keys: ed25519-pub 0xed, x25519-pub 0xec
_ED25519_HEADER = b"\xed\x01"
_X25519_HEADER = b"\xec\x01"
_KEY_LENGTH = 32


class KeyFormatError(ValueError):
    """A key (a Multikey string or a key file's content) is not in the form it must have."""


@dataclass(frozen=True)
class PartyKeys:
    """The private keys of one party (researcher, station, central service)."""

    signing: Ed25519PrivateKey
    encryption: X25519PrivateKey


def generate_keys() -> PartyKeys:
    """Fresh keys from the operating system's randomness."""
    return PartyKeys(signing=Ed25519PrivateKey.generate(), encryption=X25519PrivateKey.generate())


def save_keys(keys: PartyKeys, directory: Path) -> None:
    """Write ``signing.pem`` and ``encryption.pem`` (PKCS#8, mode 0600) into ``directory`` (created 0700).

    Existing key files are never replaced (a lost private key cannot be recovered): rotate into a new directory.

    :raises FileExistsError: a key file is already there.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for name, key in ((SIGNING_KEY_FILE, keys.signing), (ENCRYPTION_KEY_FILE, keys.encryption)):
        if (directory / name).exists():
            raise FileExistsError(f"the key file {directory / name} already exists and is not replaced")
    for name, key in ((SIGNING_KEY_FILE, keys.signing), (ENCRYPTION_KEY_FILE, keys.encryption)):
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        descriptor = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)


def load_keys(directory: Path) -> PartyKeys:
    """Read the keys :func:`save_keys` wrote, refusing a key file others may read (it may have leaked).

    :raises FileNotFoundError: a key file is missing.
    :raises PermissionError: a key file is readable or writable by its group or by others.
    :raises KeyFormatError: a key file holds no PKCS#8 PEM key of the expected kind.
    """
    signing = _load_private_key(directory / SIGNING_KEY_FILE)
    encryption = _load_private_key(directory / ENCRYPTION_KEY_FILE)
    if not isinstance(signing, Ed25519PrivateKey):
        raise KeyFormatError(f"the key file {directory / SIGNING_KEY_FILE} holds no Ed25519 private key")
    if not isinstance(encryption, X25519PrivateKey):
        raise KeyFormatError(f"the key file {directory / ENCRYPTION_KEY_FILE} holds no X25519 private key")
    return PartyKeys(signing=signing, encryption=encryption)


def _load_private_key(path: Path) -> PrivateKeyTypes:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"the key file {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(f"the private key file {path} is accessible to its group or others "
                              f"(mode {stat.S_IMODE(mode):04o}), so it is refused: run chmod 600 on it")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise KeyFormatError(f"the key file {path} does not hold an unencrypted PKCS#8 PEM private key") from None
    return key


def encode_multikey(public_key: Ed25519PublicKey | X25519PublicKey) -> str:
    """The Multikey form, ``z`` + base58-btc(multicodec header + key bytes): ``z6Mk…`` (Ed25519), ``z6LS…`` (X25519)."""
    header = _ED25519_HEADER if isinstance(public_key, Ed25519PublicKey) else _X25519_HEADER
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "z" + base58.b58encode(header + raw).decode("ascii")


def decode_multikey(text: str) -> Ed25519PublicKey | X25519PublicKey:
    """The public key a Multikey string encodes.

    :raises KeyFormatError: not ``z`` + base58-btc, an unknown multicodec header, or a key of the wrong length.
    """
    if not isinstance(text, str) or not text.startswith("z"):
        raise KeyFormatError(f"the Multikey {text!r} does not start with 'z' (multibase base58-btc)")
    try:
        data = base58.b58decode(text[1:])
    except ValueError:
        raise KeyFormatError(f"the Multikey {text!r} is not valid base58-btc after its 'z'") from None
    if len(data) < len(_ED25519_HEADER):
        raise KeyFormatError(f"the Multikey {text!r} is too short to hold a multicodec header")
    header, raw = data[:2], data[2:]
    if header not in (_ED25519_HEADER, _X25519_HEADER):
        raise KeyFormatError(f"the Multikey {text!r} has the multicodec header 0x{header.hex()}, "
                             "neither Ed25519 (0xed01) nor X25519 (0xec01)")
    if len(raw) != _KEY_LENGTH:
        raise KeyFormatError(f"the Multikey {text!r} holds {len(raw)} key bytes instead of {_KEY_LENGTH}")
    if header == _ED25519_HEADER:
        return Ed25519PublicKey.from_public_bytes(raw)
    return X25519PublicKey.from_public_bytes(raw)


def decode_signing_key(text: str) -> Ed25519PublicKey:
    """The Ed25519 public key of a ``z6Mk…`` Multikey (a verification method's ``publicKeyMultibase``).

    :raises KeyFormatError: as :func:`decode_multikey`, or the Multikey is an X25519 key.
    """
    key = decode_multikey(text)
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFormatError(f"the Multikey {text!r} is an X25519 encryption key, not an Ed25519 signing key")
    return key


def decode_encryption_key(text: str) -> X25519PublicKey:
    """The X25519 public key of a ``z6LS…`` Multikey.

    :raises KeyFormatError: as :func:`decode_multikey`, or the Multikey is an Ed25519 key.
    """
    key = decode_multikey(text)
    if not isinstance(key, X25519PublicKey):
        raise KeyFormatError(f"the Multikey {text!r} is an Ed25519 signing key, not an X25519 encryption key")
    return key
