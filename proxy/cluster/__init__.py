"""Multi-node upstreams: hash slots, the cluster's slot map, redirections, when to refresh, and discovery (cluster
seeds, Sentinel) over a fetch the caller supplies, as data and policies (slots, topology, refresh, discovery); and on
top of the upstream layer's managers, the cluster's nodes and their refreshed map (nodes), the sinks that follow
redirections and gather split replies (redirect), where each command goes (commands), and Sentinel followed (sentinel).
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
