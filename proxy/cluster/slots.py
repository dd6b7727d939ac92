"""Hash slots: which of the 16384 slots a key lives in, exactly as a cluster node computes it.

The sidecar routes a keyed command to the node owning its slot; a slot computed differently from the server's would send
the command to the wrong node and cost a MOVED on every call, so this follows the cluster spec to the letter:
CRC16 (XMODEM: polynomial 0x1021, initial value 0) of the key, or of its hash tag, modulo 16384.
"""

from __future__ import annotations

from binascii import crc_hqx

SLOTS = 16384


def crc16(data: bytes) -> int:
    """CRC16/XMODEM; the standard library's ``crc_hqx`` is that CRC when started from 0 (and runs in C)."""
    return crc_hqx(data, 0)


def hash_tag(key: bytes) -> bytes:
    """The part of ``key`` that is hashed: between the first ``{`` and the first ``}`` after it, when not empty.

    ``{user1000}.following`` and ``{user1000}.followers`` share a slot; ``foo{}{bar}`` hashes whole (the first tag is
    empty), ``foo{{bar}}`` hashes ``{bar``, and a key without a closing brace hashes whole.
    """
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1:end]
    return key


def key_slot(key: bytes) -> int:
    """The slot a cluster node assigns to ``key`` (what ``CLUSTER KEYSLOT`` answers)."""
    return crc16(hash_tag(key)) % SLOTS
