#!/usr/bin/env node
// Drive one real Node Redis client (node-redis 4/5/6 or ioredis 5/6, installed side by side under npm aliases)
// through its own connection handshake and a few everyday commands, then print one JSON line with what it saw.
//
// Usage: node compat.js '<json>' where the JSON holds:
//   client       "redis4" | "redis5" | "redis6" | "ioredis5" | "ioredis6" (the npm alias to load)
//   url          redis://[user]:password@host:port   (no db: the script adds /0 or /2 itself)
//   resp         2 | 3 | null (null: the client's default protocol)
//   name         the connection name the client sets in its handshake (CLIENT SETNAME / HELLO SETNAME)
//   prefix       key prefix, unique per run
//   sequential   how many connect-per-request cycles to run one after another
//   parallel     how many connect-per-request cycles to run at once
//   cluster      true: the sidecar fronts a Redis Cluster (no SELECT 2; the chatroom's pattern over many rooms instead)
//
// Everything the client reports as an error (rejected promises and 'error' events) is collected in `errors`: the
// test asserts it stays empty, because a client that logs a handshake error and carries on is still a failure.
"use strict";

const cfg = JSON.parse(process.argv[2]);
const errors = [];

function note(where) {
  return (err) => errors.push(`${where}: ${err && err.message ? err.message : String(err)}`);
}

function nodeRedis(pkg) {
  const { createClient } = require(pkg);
  return {
    async open(db) {
      const options = {
        url: `${cfg.url}/${db}`,
        name: cfg.name,
        socket: { reconnectStrategy: false, connectTimeout: 5000 },
      };
      if (cfg.resp) options.RESP = cfg.resp;
      const client = createClient(options);
      client.on("error", note(`${pkg} error event`));
      await client.connect();
      return client;
    },
    async close(client) {
      // v4 only has QUIT; v5/v6 deprecate it in favour of close() (which waits for replies, then ends the socket).
      if (typeof client.close === "function") await client.close();
      else await client.quit();
    },
    set: (c, k, v) => c.set(k, v),
    get: (c, k) => c.get(k),
    incr: (c, k) => c.incr(k),
    select: (c, db) => c.select(db),
    raw: (c, args) => c.sendCommand(args),
    pipeline: (c, k, counter) => c.multi().set(k, "piped").get(k).incr(counter).execAsPipeline(),
  };
}

function ioredis(pkg) {
  const mod = require(pkg);
  const Redis = mod.default || mod.Redis || mod;
  return {
    async open(db) {
      const options = {
        connectionName: cfg.name,
        lazyConnect: true,
        retryStrategy: () => null,
        maxRetriesPerRequest: 0,
        connectTimeout: 5000,
      };
      if (cfg.resp) options.protocol = cfg.resp;
      const client = new Redis(`${cfg.url}/${db}`, options);
      client.on("error", note(`${pkg} error event`));
      await client.connect();
      return client;
    },
    close: (client) => client.quit(),
    set: (c, k, v) => c.set(k, v),
    get: (c, k) => c.get(k),
    incr: (c, k) => c.incr(k),
    select: (c, db) => c.select(db),
    raw: (c, args) => c.call(...args),
    async pipeline(c, k, counter) {
      const out = await c.pipeline().set(k, "piped").get(k).incr(counter).exec();
      for (const [err] of out) if (err) note(`${pkg} pipeline`)(err);
      return out.map(([, value]) => value);
    },
  };
}

/** One connect-per-request cycle, as a web request handler does it: connect, SET, GET, INCR, close. */
async function cycle(api, i) {
  const c = await api.open(0);
  try {
    const key = `${cfg.prefix}:k${i}`;
    await api.set(c, key, `v${i}`);
    const got = await api.get(c, key);
    await api.incr(c, `${cfg.prefix}:counter`);
    return got;
  } finally {
    await api.close(c);
  }
}

/** A longer-lived connection: pipeline, the locally answered CLIENT subcommands, an explicit SELECT 2. */
async function session(api) {
  const c = await api.open(0);
  try {
    const pipeline = await api.pipeline(c, `${cfg.prefix}:piped`, `${cfg.prefix}:counter`);
    const name = String(await api.raw(c, ["CLIENT", "GETNAME"]));
    const info = String(await api.raw(c, ["CLIENT", "INFO"]));
    const ping = String(await api.raw(c, ["PING"]));
    const echo = String(await api.raw(c, ["ECHO", "hello sidecar"]));
    if (cfg.cluster) return { pipeline, name, info, ping, echo };
    await api.select(c, 2);
    await api.set(c, `${cfg.prefix}:db2`, "in db 2");
    const db2 = await api.get(c, `${cfg.prefix}:db2`);
    return { pipeline, name, info, ping, echo, db2 };
  } finally {
    await api.close(c);
  }
}

/** The chatroom's request: join a room (SADD), list it (SMEMBERS), leave (SREM), on a fresh connection each; the
 *  rooms' keys spread over a cluster's nodes, and one MGET spans them all. */
async function chat(api) {
  const rooms = [];
  for (let i = 0; i < 6; i++) {
    const c = await api.open(0);
    try {
      const room = `${cfg.prefix}:room${i}`;
      await api.raw(c, ["SADD", room, "alice", `user${i}`]);
      const members = (await api.raw(c, ["SMEMBERS", room])).map(String).sort();
      await api.raw(c, ["SREM", room, "alice"]);
      await api.set(c, `${room}:topic`, `topic ${i}`);
      rooms.push(members);
    } finally {
      await api.close(c);
    }
  }
  const c = await api.open(0);
  try {
    const topics = (await api.raw(c, ["MGET", ...rooms.map((_, i) => `${cfg.prefix}:room${i}:topic`)])).map(String);
    return { rooms, topics };
  } finally {
    await api.close(c);
  }
}

/** A connection whose URL names db 2: the SELECT is part of the client's handshake. */
async function db2ByUrl(api) {
  const c = await api.open(2);
  try {
    return await api.get(c, `${cfg.prefix}:db2`);
  } finally {
    await api.close(c);
  }
}

async function main() {
  const api = cfg.client.startsWith("ioredis") ? ioredis(cfg.client) : nodeRedis(cfg.client);
  const out = { client: cfg.client, version: require(`${cfg.client}/package.json`).version };
  try {
    out.sequential = [];
    for (let i = 0; i < cfg.sequential; i++) out.sequential.push(await cycle(api, i));
    const parallel = [];
    for (let i = 0; i < cfg.parallel; i++) parallel.push(cycle(api, cfg.sequential + i));
    out.parallel = await Promise.all(parallel);
    Object.assign(out, await session(api));
    if (cfg.cluster) out.chat = await chat(api);
    else out.db2ByUrl = await db2ByUrl(api);
  } catch (err) {
    note("run")(err);
  }
  out.errors = errors;
  process.stdout.write(JSON.stringify(out) + "\n");
}

// A hung handshake must fail the test with a message, not stall it: the whole run gets 20 s.
setTimeout(() => {
  const timedOut = { client: cfg.client, errors: [...errors, "timeout: run took over 20 s"] };
  process.stdout.write(JSON.stringify(timedOut) + "\n");
  process.exit(2);
}, 20000).unref();

main().then(() => process.exit(0));
