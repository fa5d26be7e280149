"""End-to-end encryption at the station: seal an output to its readers, open an input sealed to this station.

Every output leaves its station encrypted (age, X25519 recipients: ``trust.sealing``) to exactly its next readers:
the next station, the round's aggregator, the next round's stations, or the requester. The central service names
them and their keys in the work item (``WorkItem.readers``), but it is semi-trusted: a compromised one could add or
substitute a key it holds and read every result. So :func:`readers_for`, the one place the station turns readers
into keys, checks them against what the researcher signed: it derives the readers again from the signed request
(:func:`signed_readers`: route, mode, rounds, aggregator, requester, result recipient) with the same rule the
central service uses (``client.readers.reader_parties``), refuses a reader the signature does not allow, a missing
one, and a requester's key other than the signed ``pht:resultRecipient``; and it pins each reader's encryption key
on first use (``state_dir/reader-keys.json``, :class:`~station.signed_requests.KeyPins`), since a key's Multikey
comes from the central registry. Each refusal is one sentence naming the reader, before the train runs. The admin
reviews the plain output; what is held for release, staged, released and promoted is the ciphertext, so the
central service and the object store only ever hold ciphertext and its digest.

An input is fetched by its (ciphertext) digest, verified, opened with the station's own X25519 key
(``PHT_STATION_KEYS_DIR``) and unpacked safely; a ciphertext not for this station, truncated or altered fails the
execution with one sentence, and nothing decrypted is left on disk (``trust.open_sealed_file`` writes the
plaintext only once it all authenticated, and it is deleted after unpacking either way).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

import pyoxigraph as ox
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from client import ClientError, Reader, WorkItem, reader_parties
from client.public_keys import PublicKeyRecord
from graph_store import PHT, RDF_TYPE
from trust import (
    KeyFormatError,
    ciphertext_file_digest,
    decode_encryption_key,
    load_keys,
    open_sealed_file,
    seal_file,
)

from . import archive
from .objects import ObjectStore
from .signed_requests import KeyPins, RequestRefused, keys_from_wire, parse_ntriples

log = logging.getLogger("pht.station")

__all__ = ["READER_KEYS_FILE", "EncryptionRefused", "KeyRegistry", "SignedReaders", "fetch_opened", "readers_for",
           "seal_output", "signed_readers", "station_identity"]

UNSIGNED = ("the train names no result recipient, so its result cannot be encrypted to anyone: submit it signed")
READER_KEYS_FILE = "reader-keys.json"
"""The readers' encryption keys this station pinned (``{party IRI: Multikey}``), under its state folder."""


class EncryptionRefused(ValueError):
    """An output cannot be sealed to its readers, or an input cannot be opened; one sentence naming why."""


class KeyRegistry(Protocol):
    """Where the station reads a party's registered keys (``CentralClient.keys``: ``GET /api/keys``)."""

    def keys(self, *, station: str | None = None, researcher: str | None = None) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SignedReaders:
    """What the researcher's signed request says about who may read a train's outputs."""

    route: tuple[str, ...]
    """Station IRIs by stop index."""
    federated: bool
    rounds: int
    aggregator: str | None
    requester: str
    recipient: str
    """IRI of the requester's encryption key the final result is sealed to (``pht:resultRecipient``)."""

    def parties(self, round_: int, stop: int | None) -> list[str]:
        """The parties that read the output of the execution at ``stop`` (None: the aggregation) of ``round_``.

        :raises EncryptionRefused: the signed definition is federated without an aggregator.
        """
        try:
            return reader_parties(federated=self.federated, rounds=self.rounds, round_=round_, stop=stop,
                                  route=self.route, aggregator=self.aggregator, requester=self.requester)
        except ValueError as e:
            raise EncryptionRefused(f"the signed request allows no reader: {e}") from None


def signed_readers(request: str) -> SignedReaders:
    """Who may read, from the signed request ``request`` (``WorkItem.request``: N-Triples of the signed document,
    verified before the station approved it; the approval binds to its hash).

    :raises EncryptionRefused: it is empty (an unsigned train) or does not say it (one sentence naming what).
    """
    if not request:
        raise EncryptionRefused(UNSIGNED)
    try:
        document = parse_ntriples(request, "signed request")
    except RequestRefused as e:
        raise EncryptionRefused(str(e)) from None
    nodes = [t.subject for t in document if t.predicate == RDF_TYPE and t.object == PHT.TrainRequest]
    if len(nodes) != 1 or not isinstance(nodes[0], ox.NamedNode):
        raise EncryptionRefused(f"the train's signed request holds {len(nodes)} train requests, not one")
    node = nodes[0]
    definition = ox.NamedNode(_one(document, node, PHT.ofDefinition, "definition"))
    stops: dict[int, str] = {}
    for stop in {t.object for t in document if t.subject == definition and t.predicate == PHT.routeStop}:
        if not isinstance(stop, ox.NamedNode):
            raise EncryptionRefused("the train's signed request has a route stop that is not an IRI")
        index = _integer(_one(document, stop, PHT.stopIndex, "stop index"), "stop index")
        stops[index] = _one(document, stop, PHT.station, "stop's station")
    if sorted(stops) != list(range(len(stops))) or not stops:
        raise EncryptionRefused("the train's signed request has no route of stops 0, 1, ... in order")
    aggregators = _values(document, definition, PHT.aggregator)
    if len(aggregators) > 1:
        raise EncryptionRefused(f"the train's signed request has {len(aggregators)} aggregators, not one")
    return SignedReaders(route=tuple(stops[i] for i in range(len(stops))),
                         federated=_one(document, definition, PHT.mode, "mode") == PHT.Federated.value,
                         rounds=_integer(_one(document, definition, PHT.rounds, "rounds"), "rounds"),
                         aggregator=aggregators[0] if aggregators else None,
                         requester=_one(document, node, PHT.requestedBy, "requester"),
                         recipient=_one(document, node, PHT.resultRecipient, "result recipient"))


def readers_for(work: WorkItem, *, state_dir: Path, registry: KeyRegistry) -> list[X25519PublicKey]:
    """The X25519 keys ``work``'s output is sealed to: one per reader the central service names, each one that the
    researcher's signed request allows, with a key this station trusts for it. Called before the train runs.

    The readers must be exactly those :func:`signed_readers` gives for ``work.round`` and ``work.stop``, the
    requester's key the signed result recipient; each key is pinned per party on first use in
    ``state_dir/reader-keys.json``, and a different one later is taken only if ``registry`` (the central registry)
    shows the pinned one rotated out or revoked and the new one current, as for the researchers' signing keys.

    :raises EncryptionRefused: no readers are named; the train is unsigned or the requester's reader has no key; a
        reader the signed request does not allow, or an allowed one missing; the requester's key is not the signed
        result recipient; a reader has no key, or one that does not decode, was rotated out or revoked, or differs
        from the one pinned for it (one sentence naming the reader).
    """
    if not work.readers:
        raise EncryptionRefused(f"the central service names no reader for the output of execution {work.execution}, "
                                "so it cannot be encrypted to anyone")
    signed = signed_readers(work.request)
    _check_parties(work, signed.parties(work.round, work.stop), signed.requester)
    keys = []
    for reader in work.readers:
        who = _who(reader, signed.requester)
        if reader.key is None and reader.party == signed.requester:
            raise EncryptionRefused(UNSIGNED)
        if reader.party == signed.requester and reader.key != signed.recipient:
            raise EncryptionRefused(f"the central service names the key {reader.key} for {who}, but the signed "
                                    f"request names {signed.recipient} as the result recipient, so the output is not "
                                    "encrypted to it")
        if reader.key is None or reader.multibase is None:
            raise EncryptionRefused(f"{who} has no encryption key at the central service, so the output cannot be "
                                    "encrypted to it")
        if reader.revoked is not None:
            raise EncryptionRefused(f"the encryption key {reader.key} of {who} was revoked at {reader.revoked}, so "
                                    "the output is not encrypted to it")
        if reader.expires is not None:
            raise EncryptionRefused(f"the encryption key {reader.key} of {who} was rotated out at {reader.expires}, "
                                    "so the output is not encrypted to it")
        try:
            keys.append(decode_encryption_key(reader.multibase))
        except KeyFormatError as e:
            raise EncryptionRefused(f"the encryption key {reader.key} of {who} cannot be used: {e}") from None
    _check_pins(work.readers, KeyPins(state_dir / READER_KEYS_FILE), registry, signed.requester)
    return keys


def _check_parties(work: WorkItem, expected: Sequence[str], requester: str) -> None:
    """Refuse readers other than ``expected``, each once: a reader added, one named twice, one left out."""
    given = [r.party for r in work.readers]
    for party in given:
        if party not in expected:
            raise EncryptionRefused(f"the central service names {_who_party(party, requester)} as a reader of the "
                                    f"output of execution {work.execution}, but the signed request does not let it "
                                    "read it, so the output is not encrypted to anyone")
        if given.count(party) > 1:
            raise EncryptionRefused(f"the central service names {_who_party(party, requester)} more than once as a "
                                    f"reader of the output of execution {work.execution}")
    for party in expected:
        if party not in given:
            raise EncryptionRefused(f"the signed request lets {_who_party(party, requester)} read the output of "
                                    f"execution {work.execution}, but the central service does not name it as a "
                                    "reader, so the output is not encrypted to anyone")


def _check_pins(readers: Sequence[Reader], pins: KeyPins, registry: KeyRegistry, requester: str) -> None:
    """Pin each reader's Multikey on first use; refuse a different one unless the registry shows a rotation (the
    pinned key no longer current, the new one a current encryption key of the party). Nothing is pinned unless
    every reader passes."""
    try:
        pinned = pins.read()
    except RequestRefused as e:
        raise EncryptionRefused(str(e)) from None
    for reader in readers:
        assert reader.multibase is not None  # checked by readers_for
        before = pinned.get(reader.party)
        if before is None or before == reader.multibase:
            continue
        registered = [k for k in _registered(registry, reader.party, requester)
                      if k.controller == reader.party and k.use == "encryption"]
        old = next((k for k in registered if k.multibase == before), None)
        new = next((k for k in registered if k.multibase == reader.multibase), None)
        if old is None or old.current or new is None or not new.current:
            raise EncryptionRefused(f"the encryption key of {_who(reader, requester)} is now {reader.multibase}, but "
                                    f"this station pinned {before} for it, which the registry does not show as "
                                    "rotated out or revoked; if its holder confirms the new key, delete its entry "
                                    f"from {pins.path}")
        log.warning("the encryption key of %s was rotated: %s replaces the pinned %s", _who(reader, requester),
                    reader.multibase, before)
    for reader in readers:
        assert reader.multibase is not None
        pins.pin(reader.party, reader.multibase)


def _registered(registry: KeyRegistry, party: str, requester: str) -> list[PublicKeyRecord]:
    """``party``'s keys as the central registry lists them (a station's or a researcher's)."""
    name = unquote(party.rsplit("/", 1)[-1])
    try:
        body = (registry.keys(researcher=unquote(party.rsplit("agents/", 1)[-1])) if party == requester
                else registry.keys(station=name))
    except ClientError as e:
        if e.status is not None and 400 <= e.status < 500:
            raise EncryptionRefused(f"the central registry lists no keys of {_who_party(party, requester)} "
                                    f"({e})") from None
        raise
    try:
        return keys_from_wire(body)
    except RequestRefused as e:
        raise EncryptionRefused(str(e)) from None


def _who(reader: Reader, requester: str) -> str:
    return _who_party(reader.party, requester)


def _who_party(party: str, requester: str) -> str:
    if party == requester:
        return f"the requester {party}"
    return f"the station {party}" if "/stations/" in party else f"the party {party}"


def _values(document: Sequence[ox.Triple], subject: ox.NamedNode, predicate: ox.NamedNode) -> list[str]:
    return [t.object.value for t in document if t.subject == subject and t.predicate == predicate
            and isinstance(t.object, ox.NamedNode | ox.Literal)]


def _one(document: Sequence[ox.Triple], subject: ox.NamedNode, predicate: ox.NamedNode, what: str) -> str:
    values = _values(document, subject, predicate)
    if len(values) != 1:
        raise EncryptionRefused(f"the train's signed request has {len(values)} values for its {what}, not one")
    return values[0]


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise EncryptionRefused(f"the train's signed request's {what} {text!r} is not a number") from None


def seal_output(plain: Path, sealed: Path, readers: list[X25519PublicKey]) -> tuple[str, int]:
    """Seal the packed output ``plain`` to ``readers`` into ``sealed`` (never partial); returns the ciphertext's
    SHA-256 (hex) and size: what the release records and the object store addresses."""
    seal_file(plain, sealed, readers)
    return ciphertext_file_digest(sealed).removeprefix("sha256:"), sealed.stat().st_size


def station_identity(keys_dir: Path | None, station: str) -> X25519PrivateKey:
    """This station's X25519 private key, from its key directory (``PHT_STATION_KEYS_DIR``).

    :raises EncryptionRefused: no key directory is set, or its keys cannot be read (one sentence naming why).
    """
    if keys_dir is None:
        raise EncryptionRefused(f"station {station} has no key directory (PHT_STATION_KEYS_DIR), so it cannot open "
                                "the inputs encrypted to it")
    try:
        return load_keys(keys_dir).encryption
    except (OSError, KeyFormatError) as e:
        raise EncryptionRefused(f"station {station} cannot read its keys: {e}") from None


def fetch_opened(store: ObjectStore, sha256: str, target: Path, identity: X25519PrivateKey, *, max_bytes: int,
                 max_files: int) -> Path:
    """Download the sealed input ``sha256`` (verified against its digest), open it with ``identity`` and unpack it
    safely into ``target`` (which must not hold anything yet); the ciphertext and the plain archive are deleted
    whatever happens, so a failure leaves nothing decrypted. Returns ``target``.

    :raises ObjectStoreError: the object is missing or its bytes differ from the digest.
    :raises SealError: the ciphertext is not for this station, truncated or altered.
    :raises archive.ArchiveError: the opened archive is unsafe or damaged.
    """
    sealed, packed = target.with_name(target.name + ".age"), target.with_name(target.name + ".tar.gz")
    try:
        store.get_file(sha256, sealed)
        open_sealed_file(sealed, packed, identity)
        archive.extract(packed, target, max_bytes=max_bytes, max_files=max_files)
    finally:
        sealed.unlink(missing_ok=True)
        packed.unlink(missing_ok=True)
    return target

