"""trust.sealing: results encrypted to exactly their readers (age, X25519 recipients, through pyrage).

Round trips to one and several readers, every bad ciphertext refused with one sentence and nothing partial, the
streaming file forms in constant memory, age's key strings, and interop with the age command line tool (Go, a
second implementation of the format: real component "age", Debian package ``age``)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import bech32
import pyrage
import pytest
from conftest import require_component
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

import trust
from trust import (
    SealError,
    ciphertext_digest,
    ciphertext_file_digest,
    from_age_identity,
    from_age_recipient,
    open_sealed,
    open_sealed_file,
    seal,
    seal_file,
    to_age_identity,
    to_age_recipient,
)

CHUNK = 64 * 1024 + 16  # an age payload chunk: 64 KiB of plaintext and its Poly1305 tag
PLAINTEXT = b"".join(b"station %d: mean systolic pressure %d mmHg, n=%d\n" % (i, 110 + i % 40, 50 + i)
                     for i in range(6000))  # ~290 KB: five payload chunks

OUR_SENTENCES = {
    "the ciphertext is empty",
    "the data is not an age ciphertext (it does not start with the age header line)",
    "the ciphertext is not encrypted to this key (no recipient stanza in its header opens with it)",
    "the ciphertext is truncated",
    "the ciphertext's header was altered (its syntax or its MAC is invalid)",
    "the ciphertext's payload was altered or cut short (a chunk failed authentication)",
}


def keys(n: int) -> list[X25519PrivateKey]:
    return [X25519PrivateKey.generate() for _ in range(n)]


def header_length(ciphertext: bytes) -> int:
    """Bytes up to and including the header's MAC line (``--- <mac>\\n``); the payload (nonce, chunks) follows."""
    mac_line = ciphertext.index(b"\n--- ") + 1
    return ciphertext.index(b"\n", mac_line) + 1


def refusal(ciphertext: bytes, identity: X25519PrivateKey) -> str:
    """The message open_sealed refuses *ciphertext* with (the test fails if it opens)."""
    with pytest.raises(SealError) as caught:
        open_sealed(ciphertext, identity)
    return str(caught.value)


# --------------------------------------------------------------------------- round trips


def test_a_single_reader_opens_what_was_sealed_to_it() -> None:
    (reader,) = keys(1)
    ciphertext = seal(PLAINTEXT, [reader.public_key()])
    assert ciphertext.startswith(b"age-encryption.org/v1\n")
    assert open_sealed(ciphertext, reader) == PLAINTEXT


def test_each_of_three_readers_opens_it_and_a_fourth_cannot() -> None:
    readers = keys(3)
    (outsider,) = keys(1)
    ciphertext = seal(PLAINTEXT, [r.public_key() for r in readers])
    for reader in readers:
        assert open_sealed(ciphertext, reader) == PLAINTEXT
    assert refusal(ciphertext, outsider) == (
        "the ciphertext is not encrypted to this key (no recipient stanza in its header opens with it)")


def test_empty_plaintext_round_trips() -> None:
    (reader,) = keys(1)
    assert open_sealed(seal(b"", [reader.public_key()]), reader) == b""


def test_duplicate_recipients_are_collapsed_into_one_stanza() -> None:
    a, b = keys(2)
    twice_a = seal(b"x", [a.public_key(), a.public_key(), b.public_key(), a.public_key()])
    assert twice_a.count(b"\n-> X25519 ") == 2
    assert seal(b"x", [a.public_key()]).count(b"\n-> X25519 ") == 1
    assert open_sealed(twice_a, a) == open_sealed(twice_a, b) == b"x"


def test_sealing_needs_a_recipient_and_refuses_a_signing_key() -> None:
    with pytest.raises(SealError, match=r"^there are no recipients to seal to$"):
        seal(b"x", [])
    with pytest.raises(TypeError, match="must be an X25519 public key, not Ed25519PublicKey"):
        seal(b"x", [Ed25519PrivateKey.generate().public_key()])  # type: ignore[list-item]


def test_the_ciphertext_holds_no_window_of_the_plaintext_nor_names_its_readers() -> None:
    plaintext = PLAINTEXT[:8000]
    readers = keys(2)
    ciphertext = seal(plaintext, [r.public_key() for r in readers])
    leaked = [i for i in range(len(plaintext) - 15) if plaintext[i:i + 16] in ciphertext]
    assert leaked == [], f"16-byte windows of the plaintext found in the ciphertext at offsets {leaked[:5]}"
    for reader in readers:  # the stanzas carry ephemeral shares, not the readers' keys
        assert reader.public_key().public_bytes_raw() not in ciphertext
        assert to_age_recipient(reader.public_key()).encode() not in ciphertext
    assert seal(plaintext, [readers[0].public_key()]) != seal(plaintext, [readers[0].public_key()])


# --------------------------------------------------------------------------- bad ciphertexts


def test_an_empty_ciphertext_is_refused() -> None:
    (reader,) = keys(1)
    assert refusal(b"", reader) == "the ciphertext is empty"


@pytest.mark.parametrize("data", [b"mean age 54.2", b"\x89PNG\r\n\x1a\n" + bytes(64), b'{"result": 1}',
                                  b"-----BEGIN PGP MESSAGE-----\n\nhQEMA\n"])
def test_data_that_is_not_age_is_refused(data: bytes) -> None:
    (reader,) = keys(1)
    assert refusal(data, reader) == (
        "the data is not an age ciphertext (it does not start with the age header line)")


def test_a_truncated_ciphertext_is_refused_wherever_it_is_cut() -> None:
    (reader,) = keys(1)
    ciphertext = seal(PLAINTEXT, [reader.public_key()])
    payload = header_length(ciphertext)
    header_cuts = [1, 10, 21, 22, 40, payload // 2, payload - 1, payload, payload + 10]  # incl. a partial nonce
    for cut in header_cuts:
        assert refusal(ciphertext[:cut], reader) == "the ciphertext is truncated", cut
    chunk_boundary = payload + 16 + 2 * CHUNK  # nonce, then two whole chunks: no final chunk follows
    assert refusal(ciphertext[:chunk_boundary], reader) == "the ciphertext is truncated"
    for cut in (payload + 16 + 100, payload + 16 + CHUNK + 5000, len(ciphertext) - 1):  # inside a chunk
        assert refusal(ciphertext[:cut], reader) == (
            "the ciphertext's payload was altered or cut short (a chunk failed authentication)")


def test_any_flipped_byte_in_the_header_is_refused() -> None:
    reader, other = keys(2)
    ciphertext = seal(b"mean age 54.2", [reader.public_key(), other.public_key()])
    messages = {}
    for position in range(header_length(ciphertext)):
        altered = bytearray(ciphertext)
        altered[position] ^= 0x01
        messages[position] = refusal(bytes(altered), reader)
    assert set(messages.values()) <= OUR_SENTENCES
    # a byte of the other reader's stanza or of the MAC changes what the MAC covers: named as altered
    other_stanza = ciphertext.index(b"\n-> X25519 ", ciphertext.index(b"\n-> X25519 ") + 1) + 12
    mac = ciphertext.index(b"\n--- ") + 6
    for position in (other_stanza, other_stanza + 30, mac, mac + 20):
        assert messages[position] == "the ciphertext's header was altered (its syntax or its MAC is invalid)", position


def test_any_flipped_byte_in_the_payload_is_refused_as_altered() -> None:
    (reader,) = keys(1)
    ciphertext = seal(PLAINTEXT, [reader.public_key()])
    start = header_length(ciphertext)
    for position in [start, start + 15, start + 16, start + 16 + CHUNK - 1, *range(start + 20, len(ciphertext), 4099),
                     len(ciphertext) - 1]:
        altered = bytearray(ciphertext)
        altered[position] ^= 0x80
        assert refusal(bytes(altered), reader) == (
            "the ciphertext's payload was altered or cut short (a chunk failed authentication)"), position


def test_refusals_are_one_sentence_and_value_errors() -> None:
    (reader,) = keys(1)
    with pytest.raises(ValueError) as caught:
        open_sealed(seal(b"x", [X25519PrivateKey.generate().public_key()]), reader)
    assert isinstance(caught.value, SealError)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert re.fullmatch(r"[a-z][^.]*", message), message


# --------------------------------------------------------------------------- file forms


def test_file_round_trip_and_the_two_forms_share_one_format(tmp_path: Path) -> None:
    a, b = keys(2)
    source = tmp_path / "result.ttl"
    source.write_bytes(PLAINTEXT)
    sealed = tmp_path / "result.ttl.age"
    seal_file(source, sealed, [a.public_key(), b.public_key()])
    assert open_sealed(sealed.read_bytes(), b) == PLAINTEXT
    opened = tmp_path / "opened.ttl"
    open_sealed_file(sealed, opened, a)
    assert opened.read_bytes() == PLAINTEXT
    (tmp_path / "from_bytes.age").write_bytes(seal(PLAINTEXT, [a.public_key()]))
    open_sealed_file(tmp_path / "from_bytes.age", opened, a)  # replaces the earlier plaintext
    assert opened.read_bytes() == PLAINTEXT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["from_bytes.age", "opened.ttl", "result.ttl",
                                                          "result.ttl.age"]  # no temporary file left


def test_a_file_failing_late_leaves_no_partial_plaintext(tmp_path: Path) -> None:
    """rage writes authenticated chunks as it goes; the last one failing must leave nothing under the target."""
    (reader,) = keys(1)
    ciphertext = bytearray(seal(PLAINTEXT, [reader.public_key()]))
    ciphertext[-3] ^= 0x01  # the final chunk: four whole chunks authenticate first
    sealed = tmp_path / "late.age"
    sealed.write_bytes(bytes(ciphertext))
    target = tmp_path / "out.ttl"
    with pytest.raises(SealError, match=r"^the ciphertext's payload was altered or cut short"):
        open_sealed_file(sealed, target, reader)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.age"]
    target.write_bytes(b"an earlier result")  # an existing target is left as it was
    sealed.write_bytes(bytes(ciphertext[:len(ciphertext) - CHUNK // 2]))
    with pytest.raises(SealError, match="cut short"):
        open_sealed_file(sealed, target, reader)
    assert target.read_bytes() == b"an earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.age", "out.ttl"]


@pytest.mark.parametrize("content, message", [
    (b"", "the ciphertext is empty"),
    (b"plain results, not sealed\n", "the data is not an age ciphertext (it does not start with the age header line)"),
    (b"age-encryption.org/v1\n-> X25519 ", "the ciphertext is truncated"),
])
def test_bad_files_are_refused_with_their_sentence(tmp_path: Path, content: bytes, message: str) -> None:
    (reader,) = keys(1)
    (tmp_path / "in.age").write_bytes(content)
    with pytest.raises(SealError) as caught:
        open_sealed_file(tmp_path / "in.age", tmp_path / "out", reader)
    assert str(caught.value) == message
    assert [p.name for p in tmp_path.iterdir()] == ["in.age"]


def test_a_file_for_other_readers_is_refused(tmp_path: Path) -> None:
    reader, outsider = keys(2)
    (tmp_path / "in.age").write_bytes(seal(PLAINTEXT, [reader.public_key()]))
    with pytest.raises(SealError, match="^the ciphertext is not encrypted to this key"):
        open_sealed_file(tmp_path / "in.age", tmp_path / "out", outsider)
    assert [p.name for p in tmp_path.iterdir()] == ["in.age"]


def test_sealing_a_missing_file_raises_os_error_and_writes_nothing(tmp_path: Path) -> None:
    (reader,) = keys(1)
    with pytest.raises(FileNotFoundError):
        seal_file(tmp_path / "missing", tmp_path / "out.age", [reader.public_key()])
    with pytest.raises(SealError, match="no recipients"):
        seal_file(tmp_path / "missing", tmp_path / "out.age", [])
    assert list(tmp_path.iterdir()) == []


MEMORY_PROBE = textwrap.dedent("""
    import resource, sys
    from pathlib import Path
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from trust import open_sealed_file, seal_file

    folder = Path(sys.argv[1])
    key = X25519PrivateKey.generate()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seal_file(folder / "plain", folder / "sealed", [key.public_key()])
    open_sealed_file(folder / "sealed", folder / "opened", key)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)  # KiB on Linux -> MiB
""")


def test_the_file_forms_stream_a_200_mb_file_in_constant_memory(tmp_path: Path) -> None:
    """Peak RSS of a fresh interpreter grows by less than 32 MiB while sealing and opening 200 MiB."""
    size = 200 * 1024 * 1024
    plain = tmp_path / "plain"
    with plain.open("wb") as stream:
        stream.write(os.urandom(1024 * 1024))  # not all zeros at the start; the rest sparse, read as zeros
        stream.truncate(size)
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, check=True, cwd=Path(trust.__file__).parent.parent)
    growth_mib = int(done.stdout.strip())
    assert growth_mib < 32, f"peak RSS grew by {growth_mib} MiB sealing and opening a 200 MiB file"
    assert (tmp_path / "sealed").stat().st_size > size
    with plain.open("rb") as a, (tmp_path / "opened").open("rb") as b:
        assert hashlib.file_digest(a, "sha256").digest() == hashlib.file_digest(b, "sha256").digest()


# --------------------------------------------------------------------------- digests


def test_the_digest_is_sha256_of_the_ciphertext(tmp_path: Path) -> None:
    (reader,) = keys(1)
    ciphertext = seal(b"mean age 54.2", [reader.public_key()])
    digest = ciphertext_digest(ciphertext)
    assert digest == "sha256:" + hashlib.sha256(ciphertext).hexdigest()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    (tmp_path / "c.age").write_bytes(ciphertext)
    assert ciphertext_file_digest(tmp_path / "c.age") == digest
    assert ciphertext_digest(ciphertext[:-1]) != digest


# --------------------------------------------------------------------------- age key strings


def test_key_strings_round_trip_in_ages_form() -> None:
    (key,) = keys(1)
    recipient, identity = to_age_recipient(key.public_key()), to_age_identity(key)
    assert re.fullmatch(r"age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}", recipient)
    assert re.fullmatch(r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}", identity)
    assert from_age_recipient(recipient).public_bytes_raw() == key.public_key().public_bytes_raw()
    assert from_age_identity(identity).private_bytes_raw() == key.private_bytes_raw()
    assert from_age_identity(identity.lower() + "\n").private_bytes_raw() == key.private_bytes_raw()


def test_key_strings_agree_with_pyrage() -> None:
    """rage (Rust) parses and prints the same strings: its identity yields our key, whose recipient is rage's."""
    generated = pyrage.x25519.Identity.generate()
    key = from_age_identity(str(generated))
    assert to_age_identity(key) == str(generated)
    assert to_age_recipient(key.public_key()) == str(generated.to_public())
    ours = to_age_recipient(X25519PrivateKey.generate().public_key())
    assert str(pyrage.x25519.Recipient.from_str(ours)) == ours


def test_bad_key_strings_are_refused_without_repeating_a_secret() -> None:
    (key,) = keys(1)
    recipient, identity = to_age_recipient(key.public_key()), to_age_identity(key)
    flipped = identity[:-3] + ("Q" if identity[-3] != "Q" else "P") + identity[-2:]
    cases = [
        (from_age_identity, flipped, "is not an age identity: it is not Bech32"),
        (from_age_recipient, recipient[:-1], "is not an age recipient: it is not Bech32"),
        (from_age_recipient, "Age1" + recipient[4:], "it is not Bech32 (a wrong character, mixed case"),
        (from_age_recipient, identity, "its prefix is 'age-secret-key-1', not 'age1'"),
        (from_age_identity, recipient, "its prefix is 'age1', not 'age-secret-key-1'"),
        (from_age_recipient, bech32.bech32_encode("age", bech32.convertbits(bytes(31), 8, 5) or []), "32-byte"),
        (from_age_recipient, "", "it is not Bech32"),
    ]
    for parse, text, expected in cases:
        with pytest.raises(ValueError) as caught:
            parse(text)
        assert expected in str(caught.value), (text, str(caught.value))
        assert identity[16:] not in str(caught.value) and identity[16:].lower() not in str(caught.value)


# --------------------------------------------------------------------------- interop with the age tool (Go)


def age_tool(name: str = "age") -> str:
    """Path of the age command line tool; skips the test when it is missing (a failure under CI=true)."""
    require_component("age")
    path = shutil.which(name)
    assert path is not None
    return path


def run(*command: str, stdin: bytes = b"") -> bytes:
    return subprocess.run(command, input=stdin, capture_output=True, timeout=60, check=True).stdout


@pytest.mark.real_component("age")
def test_the_age_tool_opens_what_we_seal(tmp_path: Path) -> None:
    readers = keys(3)
    identity_file = tmp_path / "key.txt"
    identity_file.write_text(f"# one reader's age identity\n{to_age_identity(readers[1])}\n")
    ciphertext = seal(PLAINTEXT, [r.public_key() for r in readers])
    assert run(age_tool(), "-d", "-i", str(identity_file), stdin=ciphertext) == PLAINTEXT
    (tmp_path / "sealed.age").write_bytes(ciphertext)
    assert run(age_tool(), "-d", "-i", str(identity_file), str(tmp_path / "sealed.age")) == PLAINTEXT
    identity_file.write_text(f"{to_age_identity(X25519PrivateKey.generate())}\n")
    refused = subprocess.run([age_tool(), "-d", "-i", str(identity_file)], input=ciphertext, capture_output=True,
                             timeout=60, check=False)
    assert refused.returncode != 0 and b"no identity matched" in refused.stderr


@pytest.mark.real_component("age")
def test_we_open_what_the_age_tool_encrypts(tmp_path: Path) -> None:
    reader, other = keys(2)
    binary = run(age_tool(), "-r", to_age_recipient(reader.public_key()), "-r", to_age_recipient(other.public_key()),
                 stdin=PLAINTEXT)
    assert open_sealed(binary, reader) == open_sealed(binary, other) == PLAINTEXT
    armored = run(age_tool(), "-a", "-r", to_age_recipient(reader.public_key()), stdin=b"mean age 54.2")
    assert armored.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    assert open_sealed(armored, reader) == b"mean age 54.2"
    (tmp_path / "from_go.age").write_bytes(binary)
    open_sealed_file(tmp_path / "from_go.age", tmp_path / "opened", other)
    assert (tmp_path / "opened").read_bytes() == PLAINTEXT
    assert refusal(binary, X25519PrivateKey.generate()).startswith("the ciphertext is not encrypted to this key")


@pytest.mark.real_component("age")
def test_age_keygen_keys_convert_both_ways(tmp_path: Path) -> None:
    keygen = age_tool("age-keygen")
    identity_file = tmp_path / "key.txt"
    run(keygen, "-o", str(identity_file))
    identity = next(line for line in identity_file.read_text().splitlines() if line.startswith("AGE-SECRET-KEY-1"))
    key = from_age_identity(identity)
    assert to_age_identity(key) == identity
    assert to_age_recipient(key.public_key()) == run(keygen, "-y", str(identity_file)).decode().strip()
