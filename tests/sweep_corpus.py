"""The sweep's corpus, part 1: today's known differences, then the data-type command families.

Scripts are written in ``sweep_harness``'s language: a bare command (``"SET k v"``, or a list for arguments with
spaces or bytes) is one round trip; ``call(...)`` is a pipeline; ``send``/``read``/``blocked`` drive blocking calls
from several clients. Inputs are deterministic wherever possible (explicit stream ids, fixed absolute expiry times,
single-key databases for RANDOMKEY, counts that return whole collections) so that normalising stays rare.
"""

from __future__ import annotations

from sweep_corpus_state import STATE
from sweep_harness import LAST, S, blocked, call, eof, raw, read, send

# ---------------------------------------------------------------------------------------------------------------------
# KNOWN_TODAY: the sweep cases that fail against today's sidecar, as glob patterns over the case ids
# (<script>-<flavour>-resp<2|3>-<seq|pipe>[-password]) -> why. Each is a strict xfail: when a fix makes a case
# pass, the xfail fails, and the entry must be removed (or narrowed). Nothing outside this block marks a case.
# ---------------------------------------------------------------------------------------------------------------------
KNOWN_TODAY: dict[str, str] = {
    # consequences of rows of the README table that the row's own wording cannot cover
    "tx_with_subscribe-*-resp2-*": "SUBSCRIBE inside MULTI is refused (README), so after EXEC the RESP2 client is "
                                   "not in subscribed mode and PING answers as an ordinary PING",
    "ps_publish_then_unsubscribe_pipelined-redis-resp3-*": "the message of a PUBLISH to the client's own channel "
                                                           "comes after PUBLISH's reply on Redis 7.0 (README: PUBLISH "
                                                           "row); the difference is recorded at the pipeline's start",
}
# ---------------------------------------------------------------------------------------------------------------------

# ACL users the upstream is started with (in addition to conftest's "app"): one denied the locally answered commands,
# one limited to a key pattern.
LIMITED_USER = ("limited on >limited-secret ~* &* +@all -ping -echo -select -info -client|setname -client|getname "
                "-client|id -client|info -client|list -client|reply")
KEYS_USER = "keysonly on >keys-secret ~allowed:* &* +@all"
# Parameters scripts change with CONFIG SET: put back to the server's own values before every run.
TMP_CONFIG = ("busy-reply-threshold", "slowlog-log-slower-than", "maxmemory-policy", "notify-keyspace-events")

BIG = b"x" * 100_000


STRINGS = [
    S("str_basic", "strings",
      "SET k v", "GET k", "GET nokey", "SETNX k x", "SETNX k2 x", "GETSET k w", "GETDEL k", "GET k", "APPEND k2 yz",
      "STRLEN k2", "GETRANGE k2 0 1", "GETRANGE k2 -2 -1", "SETRANGE k2 5 abc", "GET k2", "SUBSTR k2 0 2",
      "MSET a 1 b 2", "MGET a b nokey", "MSETNX a 1 c 3", "MSETNX c 3 d 4", "EXISTS a b c d",
      modes=("passthrough", "password")),
    S("str_set_options", "strings",
      "SET k v NX", "SET k w NX", "SET k w XX GET", "SET k2 v XX", "SET k x GET", "SET k v EX 100", "TTL k",
      "SET k v KEEPTTL", "TTL k", "SET k v PX 100000 GET", "SET k v EX 0", "SET k v EX -5", "SET k v EX abc",
      "SET k v NX XX", "SET k v EX 10 PX 10", "SET k v EXAT 4102444800", "EXPIRETIME k",
      "SET k v PXAT 4102444800000", "PEXPIRETIME k", "SETEX k 100 v", "PSETEX k 100000 v", "SETEX k 0 v",
      "GETEX k PERSIST", "TTL k", "GETEX k EX 50", "TTL k", "GETEX nokey", "GETEX k FOO"),
    S("str_counters", "strings",
      "INCR n", "INCRBY n 10", "DECR n", "DECRBY n 3", "INCRBY n -2", "INCRBYFLOAT n 1.5", "INCRBYFLOAT n 1e3",
      "INCRBYFLOAT n -0.25", "GET n", "SET s abc", "INCR s", "INCRBYFLOAT s 1", "SET big 9223372036854775807",
      "INCR big", "DECRBY n abc", "INCRBYFLOAT n inf", "SET f 3.0", "INCRBYFLOAT f 0", "INCRBY n 1.5"),
    S("str_values", "strings",
      ["SET", "bin", b"\x00\xff\r\n$*"], "GET bin", ["SET", "empty", ""], "GET empty", "STRLEN empty",
      ["SET", "big", BIG], "STRLEN big", "GET big", ["APPEND", "big", b"\r\n"], "GETRANGE big 99990 -1",
      "MSET l1 ohmytext l2 mynewtext", "LCS l1 l2", "LCS l1 l2 LEN", "LCS l1 l2 IDX MINMATCHLEN 4 WITHMATCHLEN"),
]

BITMAPS = [
    S("bits", "bitmaps",
      "SETBIT b 7 1", "SETBIT b 7 0", "SETBIT b 100 1", "GETBIT b 100", "GETBIT b 1000", "BITCOUNT b",
      "BITCOUNT b 0 -1", "BITCOUNT b 0 100 BIT", "BITPOS b 1", "BITPOS b 0", "BITPOS b 1 2 -1 BYTE",
      "SETBIT b 4294967296 1", "SETBIT b 1 2", "SET x foobar", "BITCOUNT x", "BITCOUNT x 1 1", "SET y abcdef",
      "BITOP AND dest x y", "GET dest", "BITOP OR dest x y", "BITOP XOR dest x y", "BITOP NOT dest x", "GET dest",
      "BITOP NOT dest x y", "BITOP FOO dest x",
      "BITFIELD bf SET u8 0 255 GET u8 0 INCRBY u8 0 10 OVERFLOW SAT INCRBY u8 0 300 OVERFLOW FAIL INCRBY u8 0 300",
      "BITFIELD_RO bf GET u8 0 GET i4 4", "BITFIELD_RO bf SET u8 0 1", "BITFIELD bf GET u64 0", "GET bf"),
]

LISTS = [
    S("list_basic", "lists",
      "RPUSH l a b c", "LPUSH l z", "LPUSHX nol x", "RPUSHX l d", "LRANGE l 0 -1", "LRANGE l -100 100",
      "LRANGE l 5 1", "LLEN l", "LINDEX l 1", "LINDEX l 99", "LSET l 0 Z", "LSET l 99 x", "LSET nol 0 x",
      "LINSERT l BEFORE b B", "LINSERT l AFTER nothere x", "LREM l 0 B", "RPUSH l a a a", "LREM l -2 a",
      "LTRIM l 0 2", "LRANGE l 0 -1", "LPOS l a", "RPUSH l a b a", "LPOS l a RANK -1", "LPOS l a COUNT 0",
      "LPOS l a RANK 0", "LPOS l a MAXLEN 2 COUNT 5", "LPOP l", "LPOP l 2", "RPOP l 0", "RPOP nol", "RPOP nol 2",
      "LPOP l -1", "LLEN nol"),
    S("list_moves", "lists",
      "RPUSH src 1 2 3", "LMOVE src dst LEFT RIGHT", "LMOVE src dst RIGHT LEFT", "RPOPLPUSH src dst",
      "RPOPLPUSH src dst", "LRANGE dst 0 -1", "LMOVE src dst UP DOWN", "LMPOP 2 nol dst LEFT",
      "LMPOP 2 nol dst RIGHT COUNT 10", "LMPOP 1 nol LEFT", "LMPOP 0 dst LEFT",
      ["RPUSH", "long", *range(200)], "OBJECT ENCODING long", "LRANGE long 195 -1", "OBJECT ENCODING src"),
    S("list_block_immediate", "lists",
      "RPUSH l a b c d e f", "BLPOP l 1", "BRPOP nol l 1", "BLMOVE l d RIGHT LEFT 1", "BLMPOP 1 2 nol l LEFT COUNT 2",
      "BRPOPLPUSH d l 1", "LRANGE l 0 -1", "BLPOP nol -1", "BLPOP nol abc", "BLPOP nol"),
    S("list_block_timeout", "lists", "BLPOP nol 0.01", "BRPOP nol1 nol2 0.01", "BLMPOP 0.01 1 nol LEFT",
      "BLMOVE nol dst LEFT LEFT 0.01", "GET k"),
    S("list_block_served", "lists",
      send("BLPOP q 2"), blocked(), call("LPUSH q x", on="b"), read(),
      send("BRPOP q2 q3 2"), blocked(), call("RPUSH q3 y", on="b"), read(),
      send("BLMOVE q4 q5 LEFT RIGHT 2"), blocked(), call("RPUSH q4 z", on="b"), read(), "LRANGE q5 0 -1",
      send("BLMPOP 2 1 q6 RIGHT COUNT 2"), blocked(), call("RPUSH q6 1 2 3", on="b"), read(),
      send("BRPOPLPUSH q7 q8 2"), blocked(), call("LPUSH q7 w", on="b"), read(), "LRANGE q8 0 -1"),
    S("list_block_two_waiters", "lists",
      send("BLPOP q 2"), blocked(1), send("BLPOP q 2", on="c"), blocked(2), call("RPUSH q 1 2", on="b"), read(),
      read(on="c"), "LLEN q"),
    S("list_block_in_multi", "lists", "MULTI", "BLPOP nol 5", "BRPOPLPUSH a b 5", "BLMOVE a b LEFT LEFT 5", "EXEC"),
]

HASHES = [
    S("hash_basic", "hashes",
      "HSET h f1 v1 f2 v2", "HSET h f1 v1b", "HGET h f1", "HGET h nof", "HGET noh f", "HMSET h f3 v3",
      "HMGET h f1 nof f3", "HGETALL h", "HGETALL noh", "HKEYS h", "HVALS h", "HLEN h", "HEXISTS h f2",
      "HEXISTS h nof", "HDEL h f2 nof", "HSETNX h f1 x", "HSETNX h f4 x", "HSTRLEN h f1", "HINCRBY h n 5",
      "HINCRBY h n -10", "HINCRBY h f1 1", "HINCRBYFLOAT h fl 2.5", "HINCRBYFLOAT h fl 1e2", "HRANDFIELD h 100",
      "HRANDFIELD h 100 WITHVALUES", "HRANDFIELD noh", "HSCAN h 0", "HSCAN h 0 MATCH f* COUNT 100", "HSET h",
      "HSET h a", "HSET h a b c"),
    S("hash_big", "hashes",
      ["HSET", "h", *(x for i in range(200) for x in (f"field{i}", i))], "OBJECT ENCODING h", "HLEN h",
      "HGET h field150", "HMGET h field0 field199 nope", "HSTRLEN h field10"),
    S("hash_field_ttl", "hashes",
      "HSET h a 1 b 2 c 3 d 4", "HEXPIRE h 100 FIELDS 2 a nof", "HTTL h FIELDS 3 a b nof",
      "HPEXPIRE h 200000 FIELDS 1 b", "HPTTL h FIELDS 1 b", "HEXPIREAT h 4102444800 FIELDS 1 c",
      "HEXPIRETIME h FIELDS 1 c", "HPEXPIRETIME h FIELDS 1 c", "HPEXPIREAT h 4102444800000 FIELDS 1 d",
      "HPERSIST h FIELDS 2 a nof", "HTTL h FIELDS 1 a", "HEXPIRE h 100 NX FIELDS 1 a",
      "HEXPIRE h 100 XX FIELDS 1 a", "HEXPIRE h 10 GT FIELDS 1 a", "HEXPIRE h 0 FIELDS 1 a", "HGETALL h",
      "HEXPIRE h 100 FIELDS 3 a", "HTTL noh FIELDS 1 a", "HGETEX h EX 100 FIELDS 1 b", "HTTL h FIELDS 1 b",
      "HSETEX h EX 100 FIELDS 1 e 5", "HGETDEL h FIELDS 1 e", "HGETALL h"),
]

SETS = [
    S("set_basic", "sets",
      "SADD s a b c", "SADD s a d", "SCARD s", "SISMEMBER s a", "SISMEMBER s z", "SMISMEMBER s a z", "SMEMBERS s",
      "SREM s d z", "SMOVE s s2 a", "SMOVE s s2 nothere", "SMEMBERS s2", "SADD one only", "SPOP one", "SPOP one",
      "SPOP nos 3", "SADD s3 x", "SRANDMEMBER s3", "SRANDMEMBER s 10", "SRANDMEMBER nos", "SRANDMEMBER nos 5",
      "SSCAN s 0", "OBJECT ENCODING s"),
    S("set_algebra", "sets",
      "SADD s1 a b c d", "SADD s2 c d e", "SADD s3 1 2 3", "SINTER s1 s2", "SUNION s1 s2", "SDIFF s1 s2",
      "SINTERSTORE d s1 s2", "SUNIONSTORE d s1 s2 s3", "SDIFFSTORE d s1 nos", "SMEMBERS d", "SINTERCARD 2 s1 s2",
      "SINTERCARD 2 s1 s2 LIMIT 1", "SINTERCARD 0 s1", "SMEMBERS s3", "OBJECT ENCODING s3", "SADD s3 -5 100",
      "SMEMBERS s3", ["SADD", "wide", *range(300)], "OBJECT ENCODING wide", "SCARD wide", "SISMEMBER wide 299"),
]

ZSETS = [
    S("zset_basic", "sorted sets",
      "ZADD z 1 a 2 b 3 c", "ZADD z NX 10 a 4 d", "ZADD z XX CH 5 a 9 nope", "ZADD z GT 1 a", "ZADD z LT CH 1 a",
      "ZADD z INCR 2.5 b", "ZADD z NX XX 1 a", "ZADD z GT LT 1 a", "ZADD z nan a", "ZADD z 1",
      "ZADD z inf top -inf bottom", "ZCARD z", "ZSCORE z top", "ZSCORE z b", "ZMSCORE z a nope b",
      "ZINCRBY z 1.5 a", "ZINCRBY z -inf top", "ZRANK z b", "ZREVRANK z b", "ZRANK z nope", "ZRANK z b WITHSCORE",
      "ZCOUNT z 1 3", "ZCOUNT z (1 +inf", "ZREM z top bottom nope", "ZRANGE z 0 -1 WITHSCORES", "ZADD z 0.1 p",
      "ZSCORE z p", "ZADD z 1e-7 q 123456789.125 r", "ZRANGE z 0 -1 WITHSCORES"),
    S("zset_ranges", "sorted sets",
      "ZADD z 0 a 0 b 0 c 0 d 1 e 2 f", "ZRANGE z 0 -1", "ZRANGE z 0 -1 REV WITHSCORES", "ZRANGE z (0 2 BYSCORE",
      "ZRANGE z 2 (0 BYSCORE REV LIMIT 0 2", "ZRANGE z [a (d BYLEX", "ZRANGE z + - BYLEX REV",
      "ZRANGE z 0 1 LIMIT 0 1", "ZRANGEBYSCORE z -inf +inf WITHSCORES LIMIT 1 2", "ZREVRANGEBYSCORE z +inf 1",
      "ZRANGEBYLEX z - [b", "ZREVRANGEBYLEX z [c -", "ZREVRANGE z 0 1 WITHSCORES", "ZLEXCOUNT z [a [c",
      "ZRANGEBYLEX z a b", "ZRANGESTORE dst z 0 2", "ZRANGE dst 0 -1 WITHSCORES", "ZREMRANGEBYSCORE z 2 2",
      "ZREMRANGEBYRANK z 0 0", "ZREMRANGEBYLEX z [b [c", "ZRANGE z 0 -1 WITHSCORES",
      ["ZADD", "wide", *(x for i in range(200) for x in (i, f"m{i}"))], "OBJECT ENCODING wide",
      "ZRANGE wide 0 2 WITHSCORES", "ZSCORE wide m150"),
    S("zset_algebra_pops", "sorted sets",
      "ZADD z1 1 a 2 b 3 c", "ZADD z2 10 b 20 c 30 d", "ZUNION 2 z1 z2 WITHSCORES",
      "ZUNION 2 z1 z2 WEIGHTS 2 0.5 AGGREGATE MAX WITHSCORES", "ZINTER 2 z1 z2 WITHSCORES",
      "ZINTER 2 z1 z2 AGGREGATE MIN", "ZDIFF 2 z1 z2 WITHSCORES", "ZUNIONSTORE d 2 z1 z2",
      "ZINTERSTORE d 2 z1 z2 WEIGHTS 1 2", "ZDIFFSTORE d 2 z1 z2", "ZINTERCARD 2 z1 z2", "ZINTERCARD 2 z1 z2 LIMIT 1",
      "ZUNION 0 z1", "ZUNIONSTORE d 3 z1 z2", "ZPOPMIN z1", "ZPOPMAX z1 5", "ZPOPMIN noz",
      "ZMPOP 2 noz z2 MIN COUNT 2", "ZMPOP 1 noz MAX", "ZRANDMEMBER z2 10 WITHSCORES", "ZRANDMEMBER noz",
      "SADD set a", "ZUNION 2 z2 set WITHSCORES", "ZINCRBY set 1 a", "ZSCAN z2 0"),
    S("zset_blocking", "sorted sets",
      "ZADD z 1 a 2 b 3 c", "BZPOPMIN z 1", "BZPOPMAX nol z 1", "BZMPOP 1 1 z MIN COUNT 5", "BZPOPMIN z 0.01",
      send("BZPOPMIN zq 2"), blocked(), call("ZADD zq 5 m", on="b"), read(),
      send("BZMPOP 2 1 zq2 MAX COUNT 2"), blocked(), call("ZADD zq2 1 a 2.5 b 3 c", on="b"), read()),
]

STREAMS = [
    S("stream_basic", "streams",
      "XADD s 1-1 f v", "XADD s 1-2 f w g x", "XADD s 1-2 f v", "XADD s 0-1 f v", "XADD s 2-* f v", "XLEN s",
      "XRANGE s - +", "XRANGE s - + COUNT 1", "XRANGE s (1-1 +", "XREVRANGE s + - COUNT 2",
      "XADD s NOMKSTREAM 3-0 a b", "XADD nos NOMKSTREAM 1-0 a b", "XADD s MAXLEN 2 4-0 a b", "XLEN s",
      "XTRIM s MAXLEN 1", "XADD s 5-0 a", "XADD s 6-0 a b", "XTRIM s MINID 6-0", "XDEL s 4-0 9-9", "XSETID s 10-0",
      "XADD s 9-0 a b", "XINFO STREAM s", "XREAD COUNT 1 STREAMS s 0", "XREAD STREAMS s nos 0 0", "XREAD STREAMS s",
      "TYPE s", "XADD s * auto x", "XLEN s"),
    S("stream_groups", "streams",
      "XADD s 1-0 a 1", "XADD s 2-0 b 2", "XADD s 3-0 c 3", "XGROUP CREATE s g 0", "XGROUP CREATE s g 0",
      "XGROUP CREATE nos g $", "XGROUP CREATE nos g2 $ MKSTREAM", "XGROUP CREATECONSUMER s g alice",
      "XREADGROUP GROUP g alice COUNT 2 STREAMS s >", "XREADGROUP GROUP g bob STREAMS s >",
      "XREADGROUP GROUP g alice STREAMS s 0", "XPENDING s g", "XPENDING s g - + 10", "XPENDING s g - + 10 alice",
      "XACK s g 1-0 9-0", "XCLAIM s g bob 0 2-0", "XCLAIM s g bob 0 2-0 JUSTID", "XAUTOCLAIM s g carol 0 0-0 COUNT 10",
      "XINFO GROUPS s", "XINFO CONSUMERS s g", "XGROUP SETID s g 0", "XGROUP DELCONSUMER s g carol",
      "XREADGROUP GROUP nog x STREAMS s >", "XGROUP DESTROY s g", "XGROUP DESTROY s g", "XINFO STREAM s"),
    S("stream_block", "streams",
      "XREAD BLOCK 10 STREAMS nos 0-0", "XADD s 5-0 f v", "XREAD BLOCK 0 STREAMS s 0-0", "XREAD BLOCK abc STREAMS s 0",
      send("XREAD BLOCK 2000 STREAMS s 5-0"), blocked(), call("XADD s 6-0 f w", on="b"), read(),
      "XGROUP CREATE s2 g $ MKSTREAM", send("XREADGROUP GROUP g c BLOCK 2000 STREAMS s2 >"), blocked(),
      call("XADD s2 1-0 x y", on="b"), read(), "XREADGROUP GROUP g c BLOCK 10 STREAMS s2 >", "XPENDING s2 g"),
]

HYPERLOGLOG = [
    S("hll", "hyperloglog",
      "PFADD h a b c", "PFADD h a", "PFADD h", "PFCOUNT h", "PFADD h2 c d e", "PFCOUNT h h2", "PFMERGE h3 h h2",
      "PFCOUNT h3", "GET h2", "TYPE h3", "SET s notanhll", "PFADD s a", "PFCOUNT s", "PFMERGE d s", "PFCOUNT noh"),
    S("hll_debug", "hyperloglog", "PFADD h a", "PFDEBUG ENCODING h", "PFDEBUG GETREG nohll"),
]

GEO = [
    S("geo", "geo",
      "GEOADD g 13.361389 38.115556 Palermo 15.087269 37.502669 Catania", "GEOADD g NX 0 0 Palermo",
      "GEOADD g XX CH 13.361389 38.115556 Palermo", "GEOADD g 200 100 bad", "GEODIST g Palermo Catania",
      "GEODIST g Palermo Catania km", "GEODIST g Palermo nowhere", "GEODIST g Palermo Catania parsecs",
      "GEOHASH g Palermo Catania nowhere", "GEOPOS g Palermo nowhere",
      "GEORADIUS g 15 37 200 km WITHDIST WITHCOORD ASC",
      "GEORADIUS g 15 37 200 km WITHHASH COUNT 1 DESC", "GEORADIUSBYMEMBER g Palermo 300 km WITHDIST",
      "GEORADIUS_RO g 15 37 200 km", "GEOSEARCH g FROMLONLAT 15 37 BYRADIUS 200 km ASC WITHCOORD WITHDIST WITHHASH",
      "GEOSEARCH g FROMMEMBER Palermo BYBOX 400 400 km ASC", "GEOSEARCH g FROMMEMBER Palermo BYRADIUS 10 km",
      "GEOSEARCH g BYRADIUS 10 km", "GEOSEARCHSTORE d g FROMLONLAT 15 37 BYRADIUS 200 km STOREDIST",
      "ZRANGE d 0 -1 WITHSCORES", "GEORADIUS g 15 37 200 km STORE d2", "TYPE g", "ZSCORE g Palermo"),
]

KEYSPACE = [
    S("keys_expire", "keyspace",
      "SET k v", "EXPIRE k 100", "TTL k", "EXPIRE k 100 NX", "EXPIRE k 200 XX", "EXPIRE k 50 GT", "EXPIRE k 50 LT",
      "EXPIRE k 100 NX XX", "PEXPIRE k 100000", "PTTL k", "EXPIREAT k 4102444800", "EXPIRETIME k",
      "PEXPIREAT k 4102444800123", "PEXPIRETIME k", "PERSIST k", "PERSIST k", "TTL k", "PTTL k", "TTL nokey",
      "EXPIRETIME nokey", "EXPIRE nokey 10", "EXPIRE k abc", "EXPIRE k 0", "EXISTS k", "SET k v", "EXPIREAT k 1",
      "GET k"),
    S("keys_misc", "keyspace",
      "MSET a 1 b 2 c 3", "RPUSH l x", "EXISTS a a nokey", "TYPE a", "TYPE l", "TYPE nokey", "TOUCH a b nokey",
      "DEL a nokey", "UNLINK b", "DBSIZE", "KEYS *", "KEYS [bc]*", "SCAN 0 COUNT 100", "SCAN 0 MATCH c* COUNT 100",
      "SCAN 0 TYPE list COUNT 100", "SCAN abc", "RENAME c d", "RENAME nokey x", "RENAMENX d l", "RENAMENX d e",
      "RENAME e e", "COPY e f", "COPY e f", "COPY e f REPLACE", "COPY e f DB 2", "COPY e e", "MOVE f 1", "MOVE f 1",
      "SWAPDB 0 1", "DBSIZE", "SWAPDB 0 1", "SWAPDB 0 99", "DBSIZE", "FLUSHDB", "DBSIZE"),
    S("keys_randomkey", "keyspace", "RANDOMKEY", "SET only 1", "RANDOMKEY", "DEL only", "RANDOMKEY"),
    S("keys_dump_restore", "keyspace",
      "SET k hello", "RPUSH l a b", "DUMP nokey", "DUMP k", ["RESTORE", "k2", 0, LAST], ["RESTORE", "k2", 0, LAST],
      ["RESTORE", "k2", 0, LAST, "REPLACE"], ["RESTORE", "k3", 4102444800000, LAST, "ABSTTL"], "PEXPIRETIME k3",
      "RESTORE k4 0 garbage", ["RESTORE", "k4", -1, LAST], "GET k2", "DUMP l", ["RESTORE", "l2", 0, LAST],
      "LRANGE l2 0 -1"),
    S("keys_sort", "keyspace",
      "RPUSH l 3 1 2", "SORT l", "SORT l DESC", "SORT l LIMIT 0 2", "RPUSH names b a c", "SORT names",
      "SORT names ALPHA", "SORT_RO names ALPHA DESC", "MSET w_1 30 w_2 10 w_3 20 o_1 one o_2 two o_3 three",
      "SORT l BY w_*", "SORT l BY w_* GET o_* GET #", "SORT l BY nosort GET o_*", "SORT l STORE dst",
      "LRANGE dst 0 -1", "SORT l BY w_* LIMIT 0 1 STORE dst2", "LRANGE dst2 0 -1", "SORT_RO l STORE x", "SORT nokey",
      "SADD s 3 1 2", "SORT s", "ZADD z 3 a 1 b", "SORT z ALPHA"),
    S("keys_object", "keyspace",
      "SET n 123", "SET s hello", ["SET", "long", "x" * 50], "RPUSH l a", "HSET h f v", "OBJECT ENCODING n",
      "OBJECT ENCODING s", "OBJECT ENCODING long", "OBJECT ENCODING l", "OBJECT ENCODING h", "OBJECT ENCODING nokey",
      "OBJECT REFCOUNT s", "OBJECT IDLETIME s", "OBJECT FREQ s", "OBJECT FOO s", "OBJECT HELP",
      "CONFIG SET maxmemory-policy allkeys-lfu", "SET f v", "OBJECT FREQ f", "OBJECT IDLETIME f", "MEMORY USAGE s",
      "MEMORY USAGE nokey", "MEMORY USAGE h SAMPLES 0", "MEMORY HELP"),
]

ERRORS = [
    S("errors_arity", "errors",
      "GET", "SET k", "GETRANGE k 0", "HSET h f", "LPUSH l", "SADD s", "ZADD z 1", "XADD s", "EXPIRE k", "DEL", "MGET",
      "EVAL", "PUBLISH ch", "PING a b", "ECHO", "ECHO a b", "SELECT", "SELECT 1 2", "AUTH", "CLIENT",
      "CLIENT SETNAME", "CLIENT GETNAME x", "CLIENT ID x", "CLIENT INFO x", "CONFIG", "CONFIG GET", "OBJECT", "XINFO",
      "SCRIPT", "FUNCTION", "MEMORY", "HELLO 3 AUTH x", "RESET x", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE",
      "MULTI x", "EXEC x", "WATCH", "UNWATCH x", "CLIENT REPLY", "CLIENT SETINFO lib-name",
      "COMMAND GETKEYS", "GET k"),
    S("errors_wrongtype", "errors",
      "SET s v", "RPUSH l a", "HSET h f v", "SADD set m", "ZADD z 1 m", "XADD x 1-0 f v", "LPUSH s a", "GET l",
      "HGET l f", "SADD h m", "ZADD set 1 m", "INCR l", "XADD s 1-0 a b", "LRANGE z 0 -1", "SMEMBERS z",
      "ZRANGE h 0 -1", "APPEND h x", "PFCOUNT l", "GEOADD l 0 0 m", "BITCOUNT h", "SETBIT l 0 1", "XLEN s",
      "SINTER set s", "LMOVE s l LEFT LEFT", "SORT h", "BLPOP s 1", "BZPOPMIN l 1", "XREAD BLOCK 10 STREAMS s 0"),
    S("errors_unknown", "errors",
      "NOSUCHCOMMAND", "NOSUCHCOMMAND a b", ["NOSUCH", "a b", ""], "CONFIG FOO", "CLIENT FOO", "OBJECT FOO x",
      "XINFO FOO", "SCRIPT FOO", "FUNCTION FOO", "MEMORY FOO", "COMMAND FOO", "SLOWLOG FOO", "LATENCY FOO",
      "PUBSUB FOO", "ACL FOO", "XGROUP FOO", "CLUSTER INFO", "READONLY", "READWRITE", "MODULE LIST", "ASKING",
      "GET k"),
    S("errors_syntax", "errors",
      "SET k v FOO", "ZADD z FOO 1 a", "LPOS l a FOO 1", "SCAN 0 FOO", "GETEX k FOO", "OBJECT ENCODING",
      "EXPIRE k 10 FOO", "ZRANGE z 0 1 FOO", "XADD s FOO", "SINTERCARD x s", "LMPOP x l LEFT", "HRANDFIELD h x"),
]

INLINE = [
    S("inline", "inline",
      raw(b"PING\r\n"), raw(b'SET k "a b"\r\n'), raw(b"GET k\r\n"), raw(b"ECHO 'single q'\r\n"),
      raw(b"  GET   k  \r\n"), raw(b"\r\n\r\nPING\r\n"), raw(b'SET k2 "\\x41\\n"\r\nGET k2\r\n', n=2),
      raw(b"ECHO\r\n"), raw(b"MSET a 1 b 2\r\nMGET a b\r\n", n=2), raw(b"*1\r\n$4\r\nPING\r\nPING\r\n", n=2),
      raw(b"PING\nECHO lf\n", n=2), raw(b"*0\r\nPING\r\n"), raw(b"*-1\r\nECHO x\r\n"), raw(b'ECHO "\\t\\\\"\r\n')),
    S("inline_unbalanced_quotes", "inline", raw(b'SET k "unbalanced\r\n'), eof()),
    S("proto_error_expected_dollar", "inline", raw(b"*1\r\n:4\r\nPING\r\n"), eof()),
    S("proto_error_bulk_length", "inline", raw(b"*1\r\n$abc\r\nPING\r\n"), eof()),
]

SCRIPTS = STRINGS + BITMAPS + LISTS + HASHES + SETS + ZSETS + STREAMS + HYPERLOGLOG + GEO + KEYSPACE + ERRORS + \
    INLINE + STATE
assert len({s.name for s in SCRIPTS}) == len(SCRIPTS), "script names are unique"
