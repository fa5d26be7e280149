"""trust.keys: the key directory (private files, refused when others may read them) and Multikey public keys."""

from __future__ import annotations

import doctest
import os
import stat
from pathlib import Path

import base58
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

import trust.keys
from trust.keys import (
    KeyFormatError,
    decode_encryption_key,
    decode_multikey,
    decode_signing_key,
    encode_multikey,
    generate_keys,
    load_keys,
    save_keys,
)

# W3C vc-di-eddsa TestVectors/keyPair.json: a published Ed25519 Multikey and its secret key (multicodec 0x8026 + seed)
PUBLISHED_PUBLIC = "z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2"
PUBLISHED_SECRET = "z3u2en7t5LR2WtQH5PfFqMqwVHBeXouLzo6haApm8XHqvjxq"


def raw(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_the_doctests_run() -> None:
    assert doctest.testmod(trust.keys).failed == 0


def test_saved_keys_load_back_as_the_same_keys_in_private_files(tmp_path: Path) -> None:
    keys = generate_keys()
    directory = tmp_path / "alice" / "keys"
    save_keys(keys, directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("signing.pem", "encryption.pem"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
        assert (directory / name).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_keys(directory)
    assert isinstance(loaded.signing, Ed25519PrivateKey) and isinstance(loaded.encryption, X25519PrivateKey)
    assert raw(loaded.signing.public_key()) == raw(keys.signing.public_key())
    assert raw(loaded.encryption.public_key()) == raw(keys.encryption.public_key())


def test_saving_never_replaces_existing_keys(tmp_path: Path) -> None:
    first = generate_keys()
    save_keys(first, tmp_path)
    with pytest.raises(FileExistsError, match="already exists"):
        save_keys(generate_keys(), tmp_path)
    assert raw(load_keys(tmp_path).signing.public_key()) == raw(first.signing.public_key())


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_private_key_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    save_keys(generate_keys(), tmp_path)
    os.chmod(tmp_path / "signing.pem", mode)
    with pytest.raises(PermissionError) as caught:
        load_keys(tmp_path)
    message = str(caught.value)
    assert "signing.pem" in message and f"{mode:04o}" in message and "chmod 600" in message
    assert "\n" not in message


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    save_keys(generate_keys(), tmp_path)
    (tmp_path / "encryption.pem").unlink()
    with pytest.raises(FileNotFoundError, match="encryption.pem does not exist"):
        load_keys(tmp_path)


def test_a_key_file_without_a_pem_key_is_refused(tmp_path: Path) -> None:
    save_keys(generate_keys(), tmp_path)
    (tmp_path / "signing.pem").write_text("not a key\n")
    with pytest.raises(KeyFormatError, match="signing.pem does not hold an unencrypted PKCS#8 PEM private key"):
        load_keys(tmp_path)


def test_swapped_key_files_are_refused(tmp_path: Path) -> None:
    save_keys(generate_keys(), tmp_path)
    signing, encryption = (tmp_path / "signing.pem").read_bytes(), (tmp_path / "encryption.pem").read_bytes()
    (tmp_path / "signing.pem").write_bytes(encryption)
    (tmp_path / "encryption.pem").write_bytes(signing)
    with pytest.raises(KeyFormatError, match="signing.pem holds no Ed25519 private key"):
        load_keys(tmp_path)


def test_multikeys_have_their_published_prefixes_and_round_trip() -> None:
    keys = generate_keys()
    signing, encryption = encode_multikey(keys.signing.public_key()), encode_multikey(keys.encryption.public_key())
    assert signing.startswith("z6Mk") and encryption.startswith("z6LS")
    assert base58.b58decode(signing[1:])[:2] == b"\xed\x01" and base58.b58decode(encryption[1:])[:2] == b"\xec\x01"
    assert raw(decode_signing_key(signing)) == raw(keys.signing.public_key())
    assert raw(decode_encryption_key(encryption)) == raw(keys.encryption.public_key())
    assert isinstance(decode_multikey(signing), Ed25519PublicKey)
    assert isinstance(decode_multikey(encryption), X25519PublicKey)


def test_the_published_key_pair_encodes_to_the_published_multikey() -> None:
    secret = base58.b58decode(PUBLISHED_SECRET[1:])
    assert secret[:2] == b"\x80\x26"  # multicodec ed25519-priv
    key = Ed25519PrivateKey.from_private_bytes(secret[2:])
    assert encode_multikey(key.public_key()) == PUBLISHED_PUBLIC
    assert raw(decode_signing_key(PUBLISHED_PUBLIC)) == raw(key.public_key())


def multikey(payload: bytes) -> str:
    return "z" + base58.b58encode(payload).decode()


@pytest.mark.parametrize(("text", "problem"), [
    (PUBLISHED_PUBLIC[1:], "does not start with 'z'"),
    ("", "does not start with 'z'"),
    ("u" + PUBLISHED_PUBLIC[1:], "does not start with 'z'"),
    ("z6Mk0OIl", "not valid base58-btc"),
    ("z", "too short to hold a multicodec header"),
    ("z2", "too short to hold a multicodec header"),
    (multikey(b"\xe7\x01" + bytes(32)), "multicodec header 0xe701"),  # secp256k1-pub
    (multikey(b"\x80\x26" + bytes(32)), "multicodec header 0x8026"),  # a secret key, not a public one
    (multikey(b"\xed\x01" + bytes(31)), "31 key bytes instead of 32"),
    (multikey(b"\xed\x01" + bytes(33)), "33 key bytes instead of 32"),
    (multikey(b"\xec\x01"), "0 key bytes instead of 32"),
])
def test_a_malformed_multikey_is_refused_in_one_sentence(text: str, problem: str) -> None:
    with pytest.raises(KeyFormatError) as caught:
        decode_multikey(text)
    assert problem in str(caught.value) and "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_multikey_of_the_other_kind_is_refused() -> None:
    keys = generate_keys()
    with pytest.raises(KeyFormatError, match="is an X25519 encryption key, not an Ed25519 signing key"):
        decode_signing_key(encode_multikey(keys.encryption.public_key()))
    with pytest.raises(KeyFormatError, match="is an Ed25519 signing key, not an X25519 encryption key"):
        decode_encryption_key(encode_multikey(keys.signing.public_key()))
