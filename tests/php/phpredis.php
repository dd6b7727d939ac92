<?php
// The scenarios with phpredis (the C extension, Debian's php-redis): php phpredis.php SCENARIO.
// Each opens its connections the way a PHP-FPM request does (new Redis, connect, auth, ..., close).
declare(strict_types=1);
require __DIR__ . '/common.php';

/** A connected client; $auth is a password, [user, password], or null to stay unauthenticated. */
function connect_to(array $t, string|array|null $auth): Redis
{
    $redis = new Redis();
    $t['socket'] ? $redis->connect($t['socket']) : $redis->connect($t['host'], $t['port'], 5.0);
    if ($auth !== null) {
        $redis->auth($auth);
    }
    return $redis;
}

function phpredis_auth(array $t): void
{
    $redis = connect_to($t, null);
    attempt('GET before AUTH', fn () => $redis->get(rkey('greeting')));
    attempt('AUTH wrong password', fn () => $redis->auth('not-the-password'));
    record('last error', $redis->getLastError());
    attempt('AUTH password', fn () => $redis->auth($t['password']));
    attempt('PING', fn () => $redis->ping());
    attempt('SET', fn () => $redis->set(rkey('greeting'), 'hello'));
    attempt('AUTH wrong ACL password', fn () => $redis->auth([$t['user'], 'wrong']));
    attempt('AUTH ACL user', fn () => $redis->auth([$t['user'], $t['acl_password']]));
    attempt('ACL WHOAMI', fn () => $redis->rawCommand('ACL', 'WHOAMI'));
    attempt('GET as the ACL user', fn () => $redis->get(rkey('greeting')));
    $redis->close();

    $app = connect_to($t, [$t['user'], $t['acl_password']]);  // an app configured with an ACL user from the start
    attempt('ACL WHOAMI (new client)', fn () => $app->rawCommand('ACL', 'WHOAMI'));
    attempt('CLIENT SETNAME', fn () => $app->client('setname', 'php-app'));
    attempt('CLIENT GETNAME', fn () => $app->client('getname'));
    $app->close();
}

function phpredis_select(array $t): void
{
    $redis = connect_to($t, $t['password']);
    attempt('SELECT 2', fn () => $redis->select(2));
    attempt('SET in db 2', fn () => $redis->set(rkey('db'), 'two'));
    attempt('GET in db 2', fn () => $redis->get(rkey('db')));
    attempt('SELECT 0', fn () => $redis->select(0));
    attempt('GET in db 0', fn () => $redis->get(rkey('db')));
    attempt('SELECT 99', fn () => $redis->select(99));
    record('last error', $redis->getLastError());
    attempt('GET after the failed SELECT', fn () => $redis->get(rkey('db')));
    $redis->close();

    $again = connect_to($t, $t['password']);  // a new connection starts in db 0 again
    attempt('SELECT 2 (new client)', fn () => $again->select(2));
    attempt('DEL in db 2', fn () => $again->del(rkey('db')));
    $again->close();
}

/** The chatroom's join, look and leave, each event on a connection of its own (connect_per_request.py). */
function phpredis_chatroom(array $t): void
{
    $online = rkey('who_is_online');
    $version = rkey('who_is_online:version');
    foreach (['alice', 'bob', 'alice'] as $name) {
        $redis = connect_to($t, $t['password']);
        attempt("SADD $name", fn () => $redis->sAdd($online, $name));
        attempt("INCR after $name", fn () => $redis->incr($version));
        attempt("SMEMBERS after $name", fn () => sorted($redis->sMembers($online)));
        $redis->close();
    }
    $redis = connect_to($t, $t['password']);
    attempt('GET version', fn () => $redis->get($version));
    attempt('SCARD', fn () => $redis->sCard($online));
    attempt('SISMEMBER bob', fn () => $redis->sIsMember($online, 'bob'));
    $redis->close();
    $redis = connect_to($t, $t['password']);
    attempt('SREM alice', fn () => $redis->sRem($online, 'alice'));
    attempt('SREM nobody', fn () => $redis->sRem($online, 'nobody'));
    attempt('SMEMBERS after leaving', fn () => sorted($redis->sMembers($online)));
    $redis->close();
}

function phpredis_multi(array $t): void
{
    $redis = connect_to($t, $t['password']);
    $counter = rkey('counter');
    attempt('MULTI/EXEC', fn () => $redis->multi()->set($counter, '1')->incr($counter)->get($counter)->exec());
    attempt('EXEC with a failing command', fn () => $redis->multi()->set($counter, 'abc')->incr($counter)
        ->get($counter)->exec());
    $redis->multi();
    $redis->set($counter, 'discarded');
    attempt('DISCARD', fn () => $redis->discard());
    attempt('GET after DISCARD', fn () => $redis->get($counter));

    attempt('WATCH', fn () => $redis->watch($counter));
    $other = connect_to($t, $t['password']);  // another request changes the watched key
    $other->set($counter, 'changed');
    $other->close();
    attempt('EXEC after a WATCH conflict', fn () => $redis->multi()->set($counter, 'mine')->exec());
    attempt('GET after the conflict', fn () => $redis->get($counter));
    $redis->close();
}

function phpredis_pipeline(array $t): void
{
    $redis = connect_to($t, $t['password']);
    $hash = rkey('hash');
    attempt('pipeline', fn () => $redis->pipeline()
        ->set(rkey('a'), 'x')->get(rkey('a'))->incrBy(rkey('n'), 5)->hSet($hash, 'f', 'v')->hGetAll($hash)
        ->get(rkey('missing'))->lPush(rkey('list'), 'one', 'two')->lRange(rkey('list'), 0, -1)
        ->exec());
    attempt('pipeline with an error', fn () => $redis->pipeline()->get(rkey('a'))->incr(rkey('a'))->get(rkey('n'))
        ->exec());
    $redis->close();
}

/** Subscribe with a read timeout: the test publishes three messages, then the timeout ends the wait. */
function phpredis_subscribe(array $t): void
{
    $redis = connect_to($t, $t['password']);
    $redis->setOption(Redis::OPT_READ_TIMEOUT, 1.0);
    $messages = [];
    attempt('SUBSCRIBE until the read timeout', function () use ($redis, &$messages) {
        return $redis->subscribe([rkey('channel')], function ($r, $channel, $message) use (&$messages) {
            $messages[] = [$channel, $message];
        });
    });
    record('messages', $messages);
    attempt('PING after the timeout (phpredis reconnects)', fn () => $redis->ping());
    $redis->close();
}

/** RESP2 nulls: nil bulk strings, nil elements and nil arrays. */
function phpredis_nulls(array $t): void
{
    $redis = connect_to($t, $t['password']);
    $redis->set(rkey('present'), 'here');
    $redis->hSet(rkey('hash'), 'f', 'v');
    attempt('GET missing', fn () => $redis->get(rkey('missing')));
    attempt('HGET missing hash', fn () => $redis->hGet(rkey('nohash'), 'f'));
    attempt('HGET missing field', fn () => $redis->hGet(rkey('hash'), 'g'));
    attempt('MGET with a missing key', fn () => $redis->mget([rkey('present'), rkey('missing')]));
    attempt('HGETALL missing', fn () => $redis->hGetAll(rkey('nohash')));
    attempt('LPOP missing', fn () => $redis->lPop(rkey('nolist')));
    attempt('ZSCORE missing', fn () => $redis->zScore(rkey('nozset'), 'm'));
    attempt('BLPOP timeout (nil array)', fn () => $redis->rawCommand('BLPOP', rkey('nolist'), '0.1'));
    attempt('raw GET missing', fn () => $redis->rawCommand('GET', rkey('missing')));
    $redis->close();
}

/** PHP-FPM: every request builds a client, connects, authenticates, selects its db, works and closes. */
function phpredis_per_request(array $t): void
{
    for ($i = 0; $i < 20; $i++) {
        $redis = connect_to($t, $i % 2 ? [$t['user'], $t['acl_password']] : $t['password']);
        $redis->select(1);
        attempt("request $i INCR", fn () => $redis->incr(rkey('hits')));
        attempt("request $i GET", fn () => $redis->get(rkey('hits')));
        $redis->close();
    }
    $redis = connect_to($t, $t['password']);
    $redis->select(1);
    $redis->del(rkey('hits'));
    $redis->close();
}

main($argv, 'phpredis_');
