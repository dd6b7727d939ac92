"""Multi-node upstreams as data and policies: hash slots, the cluster's slot map, redirections, when to refresh, and
discovery (cluster seeds, Sentinel) over a fetch the caller supplies. No sockets here: the core owns the connections.
"""

from .discovery import (
                        DiscoveryError,
                        Fetch,
                        ReplyError,
                        SwitchMaster,
                        discover,
                        parse_switch_master,
                        query,
                        sentinel_master,
)
from .refresh import RefreshPolicy
from .slots import SLOTS, crc16, hash_tag, key_slot
from .topology import Address, Node, Redirect, Shard, SlotMap, from_cluster_shards, from_cluster_slots, parse_redirect

__all__ = [
    "Address", "DiscoveryError", "Fetch", "Node", "Redirect", "RefreshPolicy", "ReplyError", "SLOTS", "Shard",
    "SlotMap", "SwitchMaster", "crc16", "discover", "from_cluster_shards", "from_cluster_slots", "hash_tag",
    "key_slot", "parse_redirect", "parse_switch_master", "query", "sentinel_master",
]
