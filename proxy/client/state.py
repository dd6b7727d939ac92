"""A session's states as enums, each with its transitions in one table.

``Tx`` follows MULTI/EXEC semantics as Redis has them, plus the two states a proxy adds: a WATCH or MULTI that could
not get a connection of its own (``WATCH_FAILED``, ``MULTI_FAILED``). Nothing a client queues after a failed MULTI
may run, and a failed WATCH must not let the following MULTI/EXEC run unwatched: both end in EXECABORT.
"""

from __future__ import annotations

import enum


class Tx(enum.Enum):
    NONE = "none"
    WATCHING = "watching"            # WATCH ran on the client's lease
    WATCH_FAILED = "watch_failed"    # WATCH could not get a lease: the next transaction must not run
    MULTI = "multi"                  # queueing on the client's lease
    MULTI_ABORTED = "multi_aborted"  # the sidecar refused a command at queue time: EXEC gets EXECABORT
    MULTI_FAILED = "multi_failed"    # MULTI could not get a lease: everything until EXEC/DISCARD is discarded

    __hash__ = object.__hash__  # (singletons: identity hashing, in C, for the per-command membership tests)


class TxEvent(enum.Enum):
    WATCH = "watch"
    WATCH_REFUSED = "watch_refused"
    MULTI = "multi"
    MULTI_REFUSED = "multi_refused"
    QUEUE_ERROR = "queue_error"
    END = "end"  # EXEC, DISCARD, UNWATCH outside MULTI, RESET, a change of user


TX_TRANSITIONS: dict[tuple[Tx, TxEvent], Tx] = {
    (Tx.NONE, TxEvent.WATCH): Tx.WATCHING,
    (Tx.NONE, TxEvent.WATCH_REFUSED): Tx.WATCH_FAILED,
    (Tx.WATCHING, TxEvent.WATCH): Tx.WATCHING,
    (Tx.WATCHING, TxEvent.WATCH_REFUSED): Tx.WATCHING,  # (it already holds its lease: cannot happen)
    (Tx.WATCH_FAILED, TxEvent.WATCH): Tx.WATCH_FAILED,
    (Tx.WATCH_FAILED, TxEvent.WATCH_REFUSED): Tx.WATCH_FAILED,
    (Tx.NONE, TxEvent.MULTI): Tx.MULTI,
    (Tx.WATCHING, TxEvent.MULTI): Tx.MULTI,
    (Tx.NONE, TxEvent.MULTI_REFUSED): Tx.MULTI_FAILED,
    (Tx.WATCHING, TxEvent.MULTI_REFUSED): Tx.MULTI_FAILED,
    (Tx.WATCH_FAILED, TxEvent.MULTI): Tx.MULTI_FAILED,
    (Tx.WATCH_FAILED, TxEvent.MULTI_REFUSED): Tx.MULTI_FAILED,
    (Tx.MULTI, TxEvent.QUEUE_ERROR): Tx.MULTI_ABORTED,
    (Tx.MULTI_ABORTED, TxEvent.QUEUE_ERROR): Tx.MULTI_ABORTED,
    **{(state, TxEvent.END): Tx.NONE for state in Tx},
}

QUEUEING = frozenset({Tx.MULTI, Tx.MULTI_ABORTED})  # commands go to the lease, where the upstream queues them
PINNING = frozenset({Tx.WATCHING, Tx.MULTI, Tx.MULTI_ABORTED})  # the lease carries transaction state


def next_tx(state: Tx, event: TxEvent) -> Tx:
    return TX_TRANSITIONS.get((state, event), state)


class LeaseKind(enum.Enum):
    """Why a session holds a connection of its own, which decides when it gives it back."""

    CALL = "call"                # one blocking call or WAIT: back once its reply is in
    TRANSACTION = "transaction"  # WATCH/MULTI: back after EXEC, DISCARD or UNWATCH
    SESSION = "session"          # MONITOR, CLIENT TRACKING, a dedicated subscription ...: kept until RESET


class ReplyMode(enum.Enum):
    ON = "on"
    OFF = "off"
    SKIP = "skip"  # this one command's reply is dropped


class Wait(enum.Enum):
    """Why a session reads no further command for now (the held one runs when the wait ends)."""

    DRAIN = "drain"            # its in-flight commands must finish before it may use another connection
    LEASE = "lease"            # a connection of its own is being lent
    AUTH = "auth"              # the upstream is checking its credential
    PERMISSION = "permission"  # the upstream is asked whether its login may run a locally answered command
    CONTROL = "control"        # an out-of-band command is running
    SUBSCRIBE = "subscribe"    # the upstream has not yet confirmed (or refused) its subscription
    CATCH_UP = "catch up"      # messages sent before its UNSUBSCRIBE, RESET or QUIT are still on their way
    SERVER = "server"          # the upstream has not yet said what it is (HELLO answers with its name and version)
    TOPOLOGY = "topology"      # a cluster's layout (or the server's key specs) is being learned
