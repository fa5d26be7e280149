"""Who reads an execution's output, and with which key, as the central service names them in each work item
(``WorkItem.readers``). The rule of who is :func:`client.readers.reader_parties` (re-exported here), shared with
the stations: each station derives the readers again from the researcher's signed request and refuses a work item
that names others (``station/encryption.py``), so this module chooses keys, not readers. Neither the service nor
the object store is ever among them.

A station reads with its current X25519 key (``sec:keyAgreement``) in the registry; the requester with the key the
signed train request names as ``pht:resultRecipient`` (an unsigned train names none: its reader has no key, and
the station fails the execution saying so). A reader whose keys are all rotated out or revoked is given with its
newest key and when it ended, so the station refuses it naming the reader.
"""

from __future__ import annotations

from datetime import datetime

from pyoxigraph import NamedNode

from client import Reader
from client.readers import reader_parties
from graph_store import PHT, GraphStore

from .keys import KeyDirectory, PublicKeyRecord

__all__ = ["ReaderDirectory", "reader_parties"]


class ReaderDirectory:
    """The readers of executions with their keys, read from the central graph (``train_readers.rq``, ``route.rq``,
    the keys through :class:`KeyDirectory`). One instance answers one request: it keeps what it read per train and
    per party, so a station's work list costs a few queries per train, not per execution."""

    def __init__(self, store: GraphStore) -> None:
        self.store = store
        self.keys = KeyDirectory(store)
        self._trains: dict[NamedNode, tuple[dict[str, object], list[str]]] = {}
        self._readers: dict[str, Reader] = {}

    def readers(self, train: NamedNode, *, round_: int, stop: int | None) -> list[Reader]:
        """The readers of the output of ``train``'s execution at ``stop`` (None: the aggregation) of ``round_``;
        empty if the train or its definition cannot be read."""
        context = self._train(train)
        if context is None:
            return []
        row, route = context
        requester = str(row["requester"])
        aggregator = row.get("aggregator")
        try:
            parties = reader_parties(federated=row["mode"] == PHT.Federated.value, rounds=int(str(row["rounds"])),
                                     round_=round_, stop=stop, route=route, requester=requester,
                                     aggregator=None if aggregator is None else str(aggregator))
        except ValueError:
            return []
        recipient = row.get("recipient")
        return [self._requester(requester, None if recipient is None else str(recipient)) if party == requester
                else self._station(party) for party in parties]

    def _train(self, train: NamedNode) -> tuple[dict[str, object], list[str]] | None:
        if train not in self._trains:
            rows = list(self.store.run_query("train_readers", train=train))
            if not rows:
                return None
            row = {name: (None if rows[0][name] is None else rows[0][name].value)
                   for name in ("definition", "mode", "rounds", "aggregator", "requester", "recipient")}
            route = [r["station"].value for r in self.store.run_query("route", definition=rows[0]["definition"])]
            self._trains[train] = (row, route)
        return self._trains[train]

    def _requester(self, party: str, recipient: str | None) -> Reader:
        if recipient is None:
            return Reader(party=party)
        record = self.keys.record(recipient)
        if record is None or record.use != "encryption" or record.controller != party:
            return Reader(party=party, key=recipient)  # no Multikey: the station refuses it, naming the reader
        return _reader(party, record)

    def _station(self, party: str) -> Reader:
        if party not in self._readers:
            keys = [k for k in self.keys.party_keys(party) if k.use == "encryption"]
            current = [k for k in keys if k.current]
            chosen = (current or keys)[-1:]  # the newest current key; else the newest, to say how it ended
            self._readers[party] = _reader(party, chosen[0]) if chosen else Reader(party=party)
        return self._readers[party]


def _reader(party: str, record: PublicKeyRecord) -> Reader:
    return Reader(party=party, key=record.iri, multibase=record.multibase, expires=_time(record.expires),
                  revoked=_time(record.revoked))


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
