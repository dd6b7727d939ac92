"""The sweep's corpus, part 2: scripting, transactions, pub/sub, connection and server commands, ACLs, pipelines.

These are the commands the sidecar treats specially (answered locally, leased, fanned out by the pub/sub hub,
refused), so this is where a proxy most easily stops answering as a direct connection does.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from sweep_harness import LAST, S, Script, call, eof, read, send, sleep

PW = "upstream-secret"
BOTH = ("passthrough", "password")


def sha(body: str) -> str:
    return hashlib.sha1(body.encode()).hexdigest()


LOADED = "return 'loaded'"
LIB = ("#!lua name=mylib\n"
       "redis.register_function('myfunc', function(keys, args) return redis.call('INCR', keys[1]) end)\n"
       "redis.register_function{function_name='myro', callback=function(keys, args) return 'ro' end, "
       "flags={'no-writes'}}")
BUSY_LOOP = "local t = 0 for i = 1, 300000000 do t = t + i end return t"

SCRIPTING = [
    S("eval_types", "scripting",
      ["EVAL", "return 1", 0], ["EVAL", "return 'str'", 0], ["EVAL", "return {1,2,{3,'x'},false,nil,5}", 0],
      ["EVAL", "return true", 0], ["EVAL", "return false", 0], ["EVAL", "return nil", 0],
      ["EVAL", "return 3.99", 0], ["EVAL", "return redis.status_reply('FINE')", 0],
      ["EVAL", "return redis.error_reply('MY custom')", 0], ["EVAL", "return {err='X bad'}", 0],
      ["EVAL", "return redis.call('SET', KEYS[1], ARGV[1])", 1, "k", "v"],
      ["EVAL", "return redis.call('GET', KEYS[1])", 1, "k"], ["EVAL", "return redis.call('INCR', KEYS[1])", 1, "k"],
      ["EVAL", "return redis.pcall('INCR', KEYS[1])", 1, "k"], ["EVAL", "return redis.call('nosuch')", 0],
      ["EVAL", "syntax error here", 0], ["EVAL", "return 1", -1], ["EVAL", "return 1", "x"],
      ["EVAL", "return KEYS[1]..ARGV[1]", 1, "a", "b"], "HSET h f v", "ZADD z 1.5 m",
      ["EVAL", "redis.setresp(3); return redis.call('HGETALL', KEYS[1])", 1, "h"],
      ["EVAL", "redis.setresp(3); return redis.call('ZSCORE', KEYS[1], 'm')", 1, "z"],
      ["EVAL", "return {double=3.5}", 0], ["EVAL", "return {map={a=1}}", 0],
      ["EVAL", "return {big_number='123456789012345678901234567890'}", 0],
      ["EVAL", "redis.call('SELECT', 1); return redis.call('SET', 'inone', 'x')", 0], "GET inone"),
    S("eval_scripts", "scripting",
      ["SCRIPT", "LOAD", LOADED], ["EVALSHA", sha(LOADED), 0], ["EVALSHA", "0" * 40, 0],
      ["EVALSHA_RO", sha(LOADED), 0], ["EVAL_RO", "return redis.call('SET','k','v')", 0],
      ["EVAL_RO", "return redis.call('GET','k')", 0], ["SCRIPT", "EXISTS", sha(LOADED), "0" * 40], "SCRIPT FLUSH",
      ["SCRIPT", "EXISTS", sha(LOADED)], "SCRIPT FLUSH ASYNC", "SCRIPT FLUSH FOO", "SCRIPT KILL", "SCRIPT HELP"),
    S("script_debug", "scripting", "SCRIPT DEBUG NO"),
    S("functions", "scripting",
      ["FUNCTION", "LOAD", LIB], ["FUNCTION", "LOAD", LIB], ["FUNCTION", "LOAD", "REPLACE", LIB], "FCALL myfunc 1 k",
      "FCALL_RO myro 0", "FCALL_RO myfunc 1 k", "FCALL nofunc 0", "FCALL myfunc x", "FUNCTION LIST",
      "FUNCTION LIST WITHCODE", "FUNCTION LIST LIBRARYNAME mylib", "FUNCTION STATS", "FUNCTION DUMP",
      "FUNCTION FLUSH", ["FUNCTION", "RESTORE", LAST], "FUNCTION LIST", "FUNCTION DELETE mylib",
      "FUNCTION DELETE mylib", "FUNCTION KILL", ["FUNCTION", "LOAD", "bad code"], "FUNCTION HELP"),
    S("busy_script", "scripting",
      "CONFIG SET busy-reply-threshold 50", send(["EVAL", BUSY_LOOP, 0]), sleep(0.25), call("PING", on="b"),
      call("GET k", on="b"), call("ECHO x", on="b"), call("SCRIPT KILL", on="b"), read(), call("PING", on="b"),
      protos=(2,)),
]

TRANSACTIONS = [
    S("tx_basic", "transactions",
      "MULTI", "SET k 1", "INCR k", "GET k", "EXEC", "MULTI", "SET k 2", "DISCARD", "GET k", "EXEC", "DISCARD",
      "MULTI", "MULTI", "EXEC", modes=BOTH),
    S("tx_queue_errors", "transactions",
      "MULTI", "SET k", "INCR k", "EXEC", "GET k", "MULTI", "NOSUCHCMD", "EXEC", "MULTI", "SET k v", "LPUSH k x",
      "GET k", "EXEC", "MULTI", "WATCH k", "EXEC"),
    S("tx_subscribe_arity", "transactions", "MULTI", "SUBSCRIBE", "EXEC"),
    S("tx_watch", "transactions",
      "SET k 1", "WATCH k", call("SET k 2", on="b"), "MULTI", "INCR k", "EXEC", "GET k", "WATCH k", "UNWATCH",
      call("SET k 3", on="b"), "MULTI", "INCR k", "EXEC", "WATCH k nokey", "MULTI", "EXEC", "UNWATCH",
      "WATCH k", call("SELECT 1", "SET k x", on="b"), "MULTI", "GET k", "EXEC"),
    S("tx_arity", "transactions",
      "EXEC x", "DISCARD x", "MULTI x", "SELECT 1", "PING", "SET k v", "GET k", "EXEC x", "DISCARD x", "EXEC",
      "DISCARD", "SELECT 0", "GET k"),
    S("tx_watch_then_select", "transactions",
      "SET k 0", "WATCH k", "SELECT 1", "SET k x", "MULTI", "GET k", "EXEC", "SELECT 0", "GET k"),
    S("tx_watch_then_hello", "transactions",
      "SET k 1", "WATCH k", "HELLO 3", "MULTI", "INCR k", "EXEC", "HELLO 2", "WATCH k", "HELLO 2", "UNWATCH"),
    S("tx_local_cmds", "transactions", "SET k v", "MULTI", "PING", "PING x", "ECHO hi", "INFO keyspace", "EXEC"),
    S("tx_blocking", "transactions", "MULTI", "BLPOP nol 5", "BRPOPLPUSH a b 5", "XREAD BLOCK 100 STREAMS s 0", "EXEC"),
    S("tx_reset", "transactions", "MULTI", "SET k v", "RESET", ["AUTH", PW], "GET k", "EXEC"),
    S("tx_quit", "transactions", "MULTI", "SET k v", "QUIT", eof(), call("GET k", on="b")),
    S("tx_with_select", "transactions", "MULTI", "SELECT 1", "SET k v", "EXEC"),
    S("tx_with_client_setname", "transactions", "MULTI", "CLIENT SETNAME x", "EXEC"),
    S("tx_with_auth", "transactions", "MULTI", ["AUTH", PW], "EXEC"),
    S("tx_with_hello", "transactions", "MULTI", "HELLO 2", "EXEC"),
    S("tx_with_debug", "transactions", "MULTI", "DEBUG SLEEP 0", "EXEC"),
    S("tx_with_subscribe", "transactions", "MULTI", "SUBSCRIBE ch", "EXEC"),
    S("tx_pipeline", "transactions",
      call("MULTI", "SET a 1", "INCR a", "EXEC", "GET a"), call("MULTI", "SET", "EXEC", "GET a"),
      call("WATCH a", "MULTI", "INCR a", "EXEC", "UNWATCH")),
]

PUBSUB = [
    S("ps_basic", "pubsub",
      call("SUBSCRIBE c1 c2", n=2), "PING", "PING x", call("PUBLISH c1 hi", on="b"), read(), "PSUBSCRIBE c*",
      call("PUBLISH c1 again", on="b"), read(2), "UNSUBSCRIBE c1", "PUNSUBSCRIBE", "UNSUBSCRIBE", "PING", "GET k",
      modes=BOTH),
    S("ps_resp2_subscribed_mode", "pubsub",
      "SUBSCRIBE ch", "GET k", "SET k v", "SELECT 1", "ECHO x", "CLIENT SETNAME n", "HELLO 3", "MULTI", "INFO",
      "PUBSUB NUMSUB ch", "PING", "UNSUBSCRIBE", "GET k", protos=(2,)),
    S("ps_resp3_mixed", "pubsub",
      "SUBSCRIBE ch", "SET k v", "GET k", call("PUBLISH ch m", on="b"), read(), "GET k", "PING", "ECHO x",
      "SELECT 1", "GET k", "UNSUBSCRIBE ch", protos=(3,)),
    S("ps_self_publish", "pubsub", "SUBSCRIBE ch", call("PUBLISH ch me", n=2), "UNSUBSCRIBE ch", protos=(3,)),
    S("ps_unsubscribe_all", "pubsub", call("SUBSCRIBE c b a d", n=4), call("UNSUBSCRIBE", n=4)),
    S("ps_punsubscribe_all", "pubsub", call("PSUBSCRIBE p* a* z?", n=3), call("PUNSUBSCRIBE", n=3)),
    S("ps_sunsubscribe_all", "pubsub", call("SSUBSCRIBE c b a", n=3), call("SUNSUBSCRIBE", n=3)),
    S("ps_unsubscribe_unsubscribed", "pubsub",
      "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE", "UNSUBSCRIBE nosuch", "PUNSUBSCRIBE no*", "GET k"),
    S("ps_subscribe_twice", "pubsub",
      "SUBSCRIBE ch", "SUBSCRIBE ch", call("SUBSCRIBE ch x", n=2), call("PUBLISH ch m", on="b"), read(),
      "UNSUBSCRIBE ch", "UNSUBSCRIBE ch", "UNSUBSCRIBE x"),
    S("ps_counts", "pubsub",
      call("SUBSCRIBE a"), call("SUBSCRIBE b", on="b"), call("PSUBSCRIBE *", on="c"), call("PUBSUB CHANNELS", on="d"),
      call("PUBSUB CHANNELS a*", on="d"), call("PUBSUB NUMSUB a b nosuch", on="d"), call("PUBSUB NUMPAT", on="d"),
      call("PUBLISH a x", on="d"), read(), read(on="c"), call("PUBLISH b y", on="d"), read(on="b"), read(on="c")),
    S("ps_numsub_two_local", "pubsub",
      call("SUBSCRIBE a"), call("SUBSCRIBE a", on="b"), call("PUBSUB NUMSUB a", on="d"),
      call("PUBLISH a x", on="d"), read(), read(on="b")),
    S("ps_numpat_two_local", "pubsub",
      call("PSUBSCRIBE a*"), call("PSUBSCRIBE a*", on="b"), call("PUBSUB NUMPAT", on="d"),
      call("PUBLISH ab x", on="d"), read(), read(on="b")),
    S("ps_patterns_glob", "pubsub",
      call("PSUBSCRIBE h?llo h[ae]llo h\\*", n=3), call("PUBLISH hello 1", on="b"), read(2),
      call("PUBLISH hallo 2", on="b"), read(2), call(["PUBLISH", "h*", "3"], on="b"), read(),
      call("PUBLISH hxllo 4", on="b"), read()),
    S("ps_binary_channel", "pubsub",
      call(["SUBSCRIBE", b"a b\x00\xff"]), call(["PUBLISH", b"a b\x00\xff", b"\r\n"], on="b"), read(),
      call(["UNSUBSCRIBE", b"a b\x00\xff"])),
    S("ps_shard", "pubsub",
      call("SSUBSCRIBE s1 s2", n=2), "PING", call("SPUBLISH s1 m", on="b"), read(),
      call("PUBSUB SHARDCHANNELS", on="b"), call("PUBSUB SHARDNUMSUB s1 s2 nosuch", on="b"), "SUNSUBSCRIBE s1",
      "SUNSUBSCRIBE", "PING"),
    S("ps_reset_while_subscribed", "pubsub",
      call("SUBSCRIBE ch"), "RESET", ["AUTH", PW], "PUBSUB NUMSUB ch", call("PUBLISH ch m", on="b")),
    S("ps_quit_while_subscribed", "pubsub", "SUBSCRIBE ch", "QUIT", eof(), call("PUBSUB NUMSUB ch", on="b")),
    S("ps_publish_then_unsubscribe_pipelined", "pubsub",
      call("SUBSCRIBE ch", "PUBLISH ch me", "UNSUBSCRIBE ch", n=4), protos=(3,)),
    S("ps_reply_off", "pubsub",
      call("CLIENT REPLY OFF", "SUBSCRIBE ch", n=1), call("PUBLISH ch m", on="b"), read(), "RESET", ["AUTH", PW]),
    S("ps_reply_skip_subscribe", "pubsub", call("CLIENT REPLY SKIP", "SUBSCRIBE ch", "UNSUBSCRIBE ch", n=2)),
    S("ps_hello2_while_subscribed", "pubsub",
      "SUBSCRIBE ch", "HELLO 2", "PING", call("PUBLISH ch m", on="b"), read(), "UNSUBSCRIBE ch", "GET k",
      protos=(3,)),
    S("ps_keyspace_notifications", "pubsub",
      "CONFIG SET notify-keyspace-events KEA", call("PSUBSCRIBE __key*@0__:*"), call("SET k v", on="b"), read(2),
      call("SELECT 1", "SET k v", "SELECT 0", "DEL k", on="b"), read(2), "PUNSUBSCRIBE"),
    S("ps_no_subscribers", "pubsub",
      "PUBLISH nobody x", "SPUBLISH nobody x", "PUBSUB NUMSUB", "PUBSUB CHANNELS", "PUBSUB NUMPAT",
      "PUBSUB SHARDCHANNELS", "PUBSUB SHARDNUMSUB", "PUBSUB HELP"),
]

CONNECTION = [
    S("auth_variants", "connection",
      "GET k", "PING", "ECHO x", "CLIENT SETNAME n", "SELECT 1", "AUTH", "AUTH wrong", "AUTH default wrong",
      "AUTH nouser pw", "AUTH a b c", ["AUTH", PW], "ACL WHOAMI", ["AUTH", "default", PW], "AUTH app app-secret",
      "ACL WHOAMI", "AUTH wrong", "ACL WHOAMI", ["AUTH", PW], "ACL WHOAMI", auth=False, modes=BOTH),
    S("auth_pipelined", "connection",
      call("GET k", "AUTH wrong", ["AUTH", PW], "GET k", "AUTH app app-secret", "ACL WHOAMI", "AUTH keysonly nope",
           "ACL WHOAMI", ["HELLO", "3", "AUTH", "default", PW], "ACL WHOAMI"), auth=False, modes=BOTH),
    S("auth_as_app_whoami", "connection", "AUTH app app-secret", "ACL WHOAMI", "SET byapp 1", "GET byapp",
      modes=BOTH),
    S("hello_variants", "connection",
      "HELLO", "HELLO 3", "HELLO 4", "HELLO abc", "HELLO 1", "HELLO -1", "HELLO 3 AUTH default wrong",
      "HELLO 3 AUTH default", "HELLO 3 FOO", "HELLO 3 SETNAME", ["HELLO", "3", "SETNAME", "bad name"],
      ["HELLO", "2", "AUTH", "default", PW, "SETNAME", "n1"], "CLIENT GETNAME", "HELLO", "HELLO 3", "HELLO 2",
      "HELLO 3 AUTH app app-secret", "ACL WHOAMI", "HELLO 3 SETNAME n2", "CLIENT GETNAME",
      ["HELLO", "3", "SETNAME", "bad name"], "CLIENT GETNAME", "HELLO 3 AUTH default wrong SETNAME n3",
      "CLIENT GETNAME", ["HELLO", "2", "AUTH", "default", PW, "SETNAME", "bad name"], "HELLO 2 SETNAME",
      "HELLO 2", "ACL WHOAMI", auth=False, modes=BOTH),
    S("hello_cold", "connection", ["HELLO", "3", "AUTH", "default", PW], "HELLO 2", auth=False, cold=True),
    S("cold_first_pipeline", "connection",
      call(["AUTH", PW], "SET k v", "GET k", "PING", "CLIENT SETNAME x", "SELECT 1", "GET k", "SUBSCRIBE ch",
           "UNSUBSCRIBE ch"), auth=False, cold=True),
    S("select_variants", "connection",
      "SELECT 1", "SET k db1", "SELECT 0", "GET k", "SELECT 15", "SELECT 16", "SELECT -1", "SELECT abc",
      "SELECT 1.5", ["SELECT", ""], "SELECT 01", "SELECT +1", "GET k", "SELECT 1", "GET k"),
    S("select_out_of_int_range", "connection", "SELECT 9999999999", "SELECT -9999999999"),
    S("ping_echo", "connection",
      "PING", "PING hello", ["PING", ""], ["ECHO", ""], ["ECHO", b"\x00bin\r\n"], "PING a b", "ECHO", "ping",
      "EcHo MiXeD"),
    S("quit", "connection", "SET k v", "QUIT", eof(), call("GET k", on="b")),
    S("quit_pipelined", "connection", call("SET k v", "QUIT", "GET k", n=2), eof()),
    S("reset_variants", "connection",
      "SELECT 2", "SET k v", "CLIENT SETNAME nm", "RESET", "GET k", "PING", "CLIENT GETNAME", ["AUTH", PW],
      "CLIENT GETNAME", "GET k", "SELECT 2", "GET k", "RESET x", "RESET", "HELLO", ["AUTH", PW]),
    S("client_names", "connection",
      "CLIENT GETNAME", "CLIENT SETNAME n1", "CLIENT GETNAME", ["CLIENT", "SETNAME", "bad name"],
      ["CLIENT", "SETNAME", "bad\nname"], ["CLIENT", "SETNAME", ""], "CLIENT GETNAME", "CLIENT SETNAME a b",
      "client setname lower", "CLIENT GETNAME", ["CLIENT", "SETNAME", "é"], "CLIENT GETNAME"),
    S("client_info_list", "connection",
      call("CLIENT SETNAME other", on="b"), "CLIENT SETNAME me", "SELECT 3", "CLIENT INFO", "CLIENT LIST",
      "CLIENT LIST TYPE normal", "CLIENT LIST TYPE pubsub", "CLIENT LIST TYPE foo", "CLIENT LIST ID abc",
      "CLIENT LIST FOO", "CLIENT ID"),
    S("client_reply", "connection",
      call("CLIENT REPLY OFF", "SET k 1", "GET k", "CLIENT REPLY ON", "GET k", n=2),
      call("CLIENT REPLY SKIP", "SET k 2", "GET k", n=1), call("CLIENT REPLY SKIP", "CLIENT REPLY SKIP", "GET k",
                                                              "GET k", n=1),
      "CLIENT REPLY FOO", call("CLIENT REPLY OFF", "PING", "ECHO x", "CLIENT REPLY SKIP", "CLIENT REPLY ON",
                               "PING", n=2),
      call("CLIENT REPLY SKIP", "CLIENT REPLY ON", "GET k", n=1), call("CLIENT REPLY OFF", "CLIENT REPLY OFF",
                                                                      "CLIENT REPLY ON", n=1)),
    S("client_reply_local_commands", "connection",
      call("CLIENT REPLY SKIP", "HELLO 3", "PING", n=1), call("CLIENT REPLY SKIP", "HELLO 2", "PING", n=1),
      call("CLIENT REPLY OFF", "SELECT 1", "SET k v", "CLIENT REPLY ON", "GET k", "SELECT 0", "GET k", n=4),
      call("CLIENT REPLY SKIP", ["AUTH", PW], "ECHO e", n=1)),
    S("client_setinfo", "connection",
      "CLIENT SETINFO lib-name mylib", "CLIENT SETINFO lib-ver 1.0", "CLIENT SETINFO LIB-NAME x",
      ["CLIENT", "SETINFO", "lib-name", "bad name"], ["CLIENT", "SETINFO", "lib-ver", ""], "CLIENT SETINFO foo bar",
      "CLIENT INFO"),
    S("client_misc", "connection",
      "CLIENT NO-EVICT on", "CLIENT NO-EVICT off", "CLIENT NO-TOUCH on", "CLIENT GETREDIR", "CLIENT TRACKINGINFO",
      "CLIENT CACHING yes", "CLIENT HELP", "GET k"),
    S("client_refused", "connection",
      "CLIENT KILL ID 999999", "CLIENT KILL 1.2.3.4:5", "CLIENT UNBLOCK 999999", "CLIENT PAUSE 1 WRITE",
      "CLIENT UNPAUSE", "GET k"),
    S("client_session_then_hello", "connection",
      "CLIENT NO-EVICT on", "HELLO 3", "GET k", "HELLO 2", "CLIENT NO-EVICT off"),
    S("client_tracking", "connection",
      "CLIENT TRACKING ON", "GET k", call("SET k 1", on="b"), read(), "GET k", "CLIENT TRACKINGINFO",
      "CLIENT TRACKING OFF", protos=(3,)),
    S("client_tracking_resp2", "connection",
      "CLIENT TRACKING ON", "CLIENT TRACKING ON BCAST PREFIX a", "CLIENT TRACKING OFF", "CLIENT GETREDIR",
      protos=(2,)),
]

SERVER = [
    S("info_sections", "server", "INFO server", "INFO keyspace", "SET k v", "INFO keyspace", "INFO clients",
      "INFO nosuchsection", "INFO server clients"),
    S("info_default", "server", "INFO"),
    S("info_all", "server", "INFO all"),
    S("info_commandstats", "server", "INFO commandstats"),
    S("info_sidecar", "server", "INFO sidecar"),
    S("server_misc", "server",
      "DBSIZE", "SET k v", "DBSIZE", "TIME", "LASTSAVE", "ROLE", "CONFIG GET maxmemory",
      "CONFIG GET maxmemory-policy timeout", "CONFIG GET nosuchparam", "CONFIG SET nosuchparam 1",
      "CONFIG SET maxmemory-policy bogus", "CONFIG SET slowlog-log-slower-than 20000",
      "CONFIG GET slowlog-log-slower-than", "SLOWLOG GET", "SLOWLOG GET 5", "SLOWLOG LEN", "SLOWLOG RESET",
      "SLOWLOG HELP", "LATENCY LATEST", "LATENCY HISTORY command", "LATENCY DOCTOR", "LATENCY RESET",
      "LATENCY HELP", "MEMORY USAGE k", "WAIT 0 0", "WAITAOF 0 0 0", "WAITAOF 1 0 0", "CONFIG GET requirepass",
      "ACL WHOAMI", "ACL CAT", "ACL CAT hash", "ACL USERS", "ACL LOG", "ACL DRYRUN app GET k"),
    S("server_login_secrets", "server",
      "CONFIG GET requirepass", "CONFIG GET *", ["CONFIG", "SET", "requirepass", PW], "ACL LIST",
      "ACL GETUSER app", "ACL SETUSER sweep-tmp on >x", modes=BOTH),
    S("acl_deluser_load_save", "server", "ACL DELUSER sweep-tmp", "ACL LOAD", "ACL SAVE", modes=BOTH),
    S("command_introspection", "server",
      "COMMAND COUNT", "COMMAND INFO get set nosuch", "COMMAND DOCS get", "COMMAND GETKEYS SET a b",
      "COMMAND GETKEYS EVAL x 2 k1 k2 a", "COMMAND GETKEYS GET", "COMMAND GETKEYSANDFLAGS LMOVE a b LEFT RIGHT",
      "COMMAND LIST FILTERBY PATTERN x*", "COMMAND LIST FILTERBY ACLCAT hyperloglog", "COMMAND INFO client|setname",
      "COMMAND DOCS client"),
    S("command_all", "server", "COMMAND"),
    S("debug_refused", "server", "DEBUG SLEEP 0", "DEBUG OBJECT k", "DEBUG", "GET k"),
    S("shutdown_abort", "server", "SHUTDOWN ABORT", "GET k"),
    S("replication_refused", "server", "REPLICAOF NO ONE", "SLAVEOF NO ONE", "FAILOVER ABORT", "GET k"),
]

# Commands the sidecar answers itself, sent by a user the upstream's ACLs deny them to: a direct connection gets
# NOPERM. (GET then shows the connection still works.)
DENIED_LOCALLY = ["PING", "PING x", "ECHO x", "SELECT 0", "CLIENT SETNAME n", "CLIENT GETNAME", "CLIENT ID",
                  "CLIENT INFO", "CLIENT LIST", "CLIENT REPLY ON", "INFO", "INFO server"]
ACLS = [
    S("acl_local_" + c.lower().replace(" ", "_"), "acl", "AUTH limited limited-secret", c, "GET k", auth=False,
      tail=False)
    for c in DENIED_LOCALLY
] + [
    S("acl_keys", "acl", "AUTH keysonly keys-secret", "GET other", "SET allowed:1 v", "GET allowed:1",
      "MGET allowed:1 other", "PING", auth=False),
    S("acl_switch_users_pipelined", "acl",
      call("AUTH limited limited-secret", "SET k 1", "PING", "AUTH app app-secret", "PING", "ACL WHOAMI",
           "AUTH keysonly keys-secret", "GET k", "ACL WHOAMI"), auth=False, tail=False),
]

PIPELINES = [
    S("pipe_select_mid", "pipelines",
      call("SET k db0", "SELECT 1", "GET k", "SET k db1", "SELECT 0", "GET k", "SELECT 1", "GET k", "SELECT 0")),
    S("pipe_hello_mid", "pipelines",
      call("HSET h a 1", "HGETALL h", "HELLO 3", "HGETALL h", "ZADD z 1.5 m", "ZSCORE z m", "HELLO 2",
           "ZSCORE z m", "HGETALL h", "HELLO 3 AUTH app app-secret", "ACL WHOAMI", "HGETALL h",
           ["HELLO", "2", "AUTH", "default", PW], "ACL WHOAMI")),
    S("pipe_auth_mid", "pipelines",
      call("ACL WHOAMI", "AUTH app app-secret", "ACL WHOAMI", "SET byapp 1", "AUTH default wrong", "ACL WHOAMI",
           ["AUTH", PW], "ACL WHOAMI", "GET byapp"), modes=BOTH),
    # a user switch (AUTH or HELLO AUTH) pipelined behind a call on a leased connection (blocking, transaction)
    S("pipe_auth_after_blocking", "pipelines",
      call("RPUSH l x", "BLPOP l 1", "AUTH app app-secret", "ACL WHOAMI", "BLPOP l 0.01", ["AUTH", PW],
           "ACL WHOAMI")),
    S("pipe_auth_after_multi", "pipelines",
      call("MULTI", "INCR s", "EXEC", "AUTH app app-secret", "ACL WHOAMI", "GET s")),
    S("pipe_hello_auth_after_blocking", "pipelines",
      call("RPUSH l x", "BLPOP l 1", "HELLO 3 AUTH app app-secret", "ACL WHOAMI", "HELLO 2", "ACL WHOAMI")),
    S("pipe_select_after_blocking", "pipelines",
      call("SELECT 1", "RPUSH l x", "BLPOP l 1", "SELECT 0", "LLEN l", "SELECT 1", "LLEN l", "BLPOP l 0.01",
           "SELECT 0", "RPUSH l y", "SELECT 1", "RPUSH l z")),
    S("pipe_reset_after_blocking", "pipelines",
      call("RPUSH l x", "BLPOP l 1", "BLPOP l 0.01", "RESET", "GET k", ["AUTH", PW], "LLEN l")),
    S("pipe_reply_off_blocking", "pipelines",
      call("RPUSH l x", "CLIENT REPLY OFF", "BLPOP l 1", "BLPOP l 0.01", "CLIENT REPLY ON", "LLEN l", n=3)),
    S("pipe_quit_after_blocking", "pipelines", call("RPUSH l x", "BLPOP l 0.01", "QUIT", "GET k", n=3), eof()),
    S("pipe_long", "pipelines", call(*["INCR n"] * 3000, "GET n")),
    S("pipe_reset_mid", "pipelines",
      call("SELECT 3", "SET k v", "CLIENT SETNAME x", "RESET", "GET k", ["AUTH", PW], "CLIENT GETNAME", "GET k",
           "SELECT 3", "GET k")),
    S("pipe_reply_mid", "pipelines",
      call("SET a 1", "CLIENT REPLY OFF", "INCR a", "PING", "SELECT 1", "CLIENT REPLY ON", "GET a", "SELECT 0",
           "GET a", n=5)),
    S("pipe_blocking_mid", "pipelines",
      call("RPUSH l 1", "BLPOP l 1", "BLPOP l 0.01", "PING", "SET k v", "BRPOP l 0.01", "GET k")),
    S("pipe_tx_mid", "pipelines",
      call("SET x 1", "MULTI", "INCR x", "PING", "EXEC", "GET x", "WATCH x", "SELECT 1", "MULTI", "INCR x", "EXEC",
           "SELECT 0", "GET x")),
    S("pipe_subscribe_mid", "pipelines", call("SET k v", "SUBSCRIBE ch", "PING", "UNSUBSCRIBE ch", "GET k")),
    S("pipe_everything", "pipelines",
      call("SET s 1", "INCR s", "RPUSH l a b", "LPOP l", "HSET h f v", "HGETALL h", "SADD set m", "SMEMBERS set",
           "ZADD z 2.5 m", "ZRANGE z 0 -1 WITHSCORES", "XADD st 1-1 f v", "XRANGE st - +", "PFADD hll a",
           "PFCOUNT hll", "GEOADD g 13.361389 38.115556 p", "GEOPOS g p", ["EVAL", "return redis.call('GET','s')", 0],
           "PING", "ECHO e", "CLIENT SETNAME pipe", "CLIENT GETNAME", "SELECT 1", "SET s other", "SELECT 0", "GET s",
           "HELLO 3", "HGETALL h", "ZSCORE z m", "HELLO 2", "AUTH app app-secret", "ACL WHOAMI", ["AUTH", PW],
           "ACL WHOAMI", "MULTI", "INCR s", "EXEC", "BLPOP l 1", "GET nosuch", "NOSUCHCOMMAND", "GET", "LPUSH s x",
           "SUBSCRIBE ch", "UNSUBSCRIBE ch", "DBSIZE", "TYPE z", "OBJECT ENCODING l", "RESET", ["AUTH", PW],
           "GET s"), modes=BOTH),
]



def without_whoami(script: Script) -> Script:
    """A password-mode twin of ``script`` without ACL WHOAMI, which there names the sidecar's own upstream login
    (``auth_as_app_whoami`` shows that once); the twin keeps checking everything else in password mode."""
    steps = []
    for st in script.steps:
        kept = tuple(c for c in st.cmds if c != (b"ACL", b"WHOAMI"))
        steps.append(replace(st, cmds=kept, n=st.n - (len(st.cmds) - len(kept)) if st.n == len(st.cmds) else st.n))
    return replace(script, name=script.name + "_no_whoami", steps=tuple(steps), modes=("password",))


def _split_password_mode(scripts: list[Script]) -> list[Script]:
    out = []
    for s in scripts:
        whoami = any(c == (b"ACL", b"WHOAMI") for st in s.steps for c in st.cmds)
        if "password" in s.modes and whoami and s.name != "auth_as_app_whoami":
            out += [replace(s, modes=("passthrough",)), without_whoami(s)]
        else:
            out.append(s)
    return out


STATE = _split_password_mode(SCRIPTING + TRANSACTIONS + PUBSUB + CONNECTION + SERVER + ACLS + PIPELINES)
