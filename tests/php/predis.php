<?php
// The scenarios with Predis 1.1 (pure PHP, Debian's php-nrk-predis): php predis.php SCENARIO.
// Each builds its clients the way a PHP-FPM request does (new Predis\Client per request, thrown away at its end).
declare(strict_types=1);
require __DIR__ . '/common.php';
require '/usr/share/php/Predis/Autoloader.php';
Predis\Autoloader::register();

/**
 * A client that connects, authenticates and selects its db at its first command ($auth: password, [user, password]
 * or null); $more adds connection parameters, $options client options.
 */
function connect_to(array $t, string|array|null $auth, array $more = [], array $options = []): Predis\Client
{
    $parameters = $t['socket'] ? ['scheme' => 'unix', 'path' => $t['socket']]
        : ['scheme' => 'tcp', 'host' => $t['host'], 'port' => $t['port'], 'timeout' => 5.0];
    if (is_array($auth)) {
        [$parameters['username'], $parameters['password']] = $auth;
    } elseif ($auth !== null) {
        $parameters['password'] = $auth;
    }
    return new Predis\Client($parameters + $more, $options);
}

function predis_auth(array $t): void
{
    $redis = connect_to($t, null);
    attempt('GET before AUTH', fn () => $redis->get(rkey('greeting')));
    attempt('AUTH wrong password', fn () => $redis->auth('not-the-password'));
    attempt('AUTH password', fn () => $redis->auth($t['password']));
    attempt('PING', fn () => $redis->ping());
    attempt('SET', fn () => $redis->set(rkey('greeting'), 'hello'));
    attempt('AUTH wrong ACL password', fn () => $redis->executeRaw(['AUTH', $t['user'], 'wrong']));
    attempt('AUTH ACL user', fn () => $redis->executeRaw(['AUTH', $t['user'], $t['acl_password']]));
    attempt('ACL WHOAMI', fn () => $redis->executeRaw(['ACL', 'WHOAMI']));
    attempt('GET as the ACL user', fn () => $redis->get(rkey('greeting')));
    $redis->disconnect();

    $app = connect_to($t, [$t['user'], $t['acl_password']]);  // username and password in the parameters
    attempt('ACL WHOAMI (new client)', fn () => $app->executeRaw(['ACL', 'WHOAMI']));
    attempt('CLIENT SETNAME', fn () => $app->client('SETNAME', 'php-app'));
    attempt('CLIENT GETNAME', fn () => $app->client('GETNAME'));
    $app->disconnect();

    $wrong = connect_to($t, 'not-the-password');  // a bad password in the parameters fails the first command
    attempt('first command with a wrong password', fn () => $wrong->get(rkey('greeting')));
}

function predis_select(array $t): void
{
    $redis = connect_to($t, $t['password'], ['database' => 2]);  // Predis sends SELECT right after AUTH
    attempt('SET in db 2', fn () => $redis->set(rkey('db'), 'two'));
    attempt('GET in db 2', fn () => $redis->get(rkey('db')));
    attempt('SELECT 0', fn () => $redis->select(0));
    attempt('GET in db 0', fn () => $redis->get(rkey('db')));
    attempt('SELECT 99', fn () => $redis->select(99));
    attempt('GET after the failed SELECT', fn () => $redis->get(rkey('db')));
    $redis->disconnect();

    $again = connect_to($t, $t['password']);
    attempt('GET in db 0 (new client)', fn () => $again->get(rkey('db')));
    attempt('SELECT 2 (new client)', fn () => $again->select(2));
    attempt('DEL in db 2', fn () => $again->del([rkey('db')]));
    $again->disconnect();
}

/** The chatroom's join, look and leave, each event on a client of its own (connect_per_request.py). */
function predis_chatroom(array $t): void
{
    $online = rkey('who_is_online');
    $version = rkey('who_is_online:version');
    foreach (['alice', 'bob', 'alice'] as $name) {
        $redis = connect_to($t, $t['password']);
        attempt("SADD $name", fn () => $redis->sadd($online, [$name]));
        attempt("INCR after $name", fn () => $redis->incr($version));
        attempt("SMEMBERS after $name", fn () => sorted($redis->smembers($online)));
        $redis->disconnect();
    }
    $redis = connect_to($t, $t['password']);
    attempt('GET version', fn () => $redis->get($version));
    attempt('SCARD', fn () => $redis->scard($online));
    attempt('SISMEMBER bob', fn () => $redis->sismember($online, 'bob'));
    $redis->disconnect();
    $redis = connect_to($t, $t['password']);
    attempt('SREM alice', fn () => $redis->srem($online, 'alice'));
    attempt('SREM nobody', fn () => $redis->srem($online, 'nobody'));
    attempt('SMEMBERS after leaving', fn () => sorted($redis->smembers($online)));
    $redis->disconnect();
}

function predis_multi(array $t): void
{
    $redis = connect_to($t, $t['password']);
    $counter = rkey('counter');
    attempt('MULTI/EXEC', fn () => $redis->transaction(function ($tx) use ($counter) {
        $tx->set($counter, '1');
        $tx->incr($counter);
        $tx->get($counter);
    }));
    attempt('EXEC with a failing command', fn () => $redis->transaction(['exceptions' => false],
        function ($tx) use ($counter) {
            $tx->set($counter, 'abc');
            $tx->incr($counter);
            $tx->get($counter);
        }));
    attempt('raw MULTI', fn () => $redis->multi());
    attempt('queued SET', fn () => $redis->set($counter, 'discarded'));
    attempt('DISCARD', fn () => $redis->discard());
    attempt('GET after DISCARD', fn () => $redis->get($counter));

    attempt('WATCH', fn () => $redis->watch($counter));
    $other = connect_to($t, $t['password']);  // another request changes the watched key
    $other->set($counter, 'changed');
    $other->disconnect();
    attempt('raw MULTI after WATCH', fn () => $redis->multi());
    attempt('queued SET after WATCH', fn () => $redis->set($counter, 'mine'));
    attempt('EXEC after a WATCH conflict', fn () => $redis->exec());
    attempt('GET after the conflict', fn () => $redis->get($counter));
    $redis->disconnect();
}

function predis_pipeline(array $t): void
{
    $redis = connect_to($t, $t['password']);
    $hash = rkey('hash');
    attempt('pipeline', fn () => $redis->pipeline(function ($p) use ($hash) {
        $p->set(rkey('a'), 'x');
        $p->get(rkey('a'));
        $p->incrby(rkey('n'), 5);
        $p->hset($hash, 'f', 'v');
        $p->hgetall($hash);
        $p->get(rkey('missing'));
        $p->lpush(rkey('list'), ['one', 'two']);
        $p->lrange(rkey('list'), 0, -1);
    }));
    $tolerant = connect_to($t, $t['password'], [], ['exceptions' => false]);
    attempt('pipeline with an error', fn () => $tolerant->pipeline(function ($p) {
        $p->get(rkey('a'));
        $p->incr(rkey('a'));
        $p->get(rkey('n'));
    }));
    $redis->disconnect();
    $tolerant->disconnect();
}

/** Subscribe with a read timeout: the test publishes three messages, then the timeout ends the wait. */
function predis_subscribe(array $t): void
{
    $redis = connect_to($t, $t['password'], ['read_write_timeout' => 1.0]);
    $events = [];
    attempt('SUBSCRIBE until the read timeout', function () use ($redis, &$events) {
        $loop = $redis->pubSubLoop();
        $loop->subscribe(rkey('channel'));
        foreach ($loop as $event) {
            $events[] = [$event->kind, $event->channel, $event->payload];
        }
        return 'loop ended';
    });
    record('events', $events);
    $redis->disconnect();
    $next = connect_to($t, $t['password']);
    attempt('PING on a new client', fn () => $next->ping());
}

/** RESP2 nulls: nil bulk strings, nil elements and nil arrays. */
function predis_nulls(array $t): void
{
    $redis = connect_to($t, $t['password']);
    $redis->set(rkey('present'), 'here');
    $redis->hset(rkey('hash'), 'f', 'v');
    attempt('GET missing', fn () => $redis->get(rkey('missing')));
    attempt('HGET missing hash', fn () => $redis->hget(rkey('nohash'), 'f'));
    attempt('HGET missing field', fn () => $redis->hget(rkey('hash'), 'g'));
    attempt('MGET with a missing key', fn () => $redis->mget([rkey('present'), rkey('missing')]));
    attempt('HGETALL missing', fn () => $redis->hgetall(rkey('nohash')));
    attempt('LPOP missing', fn () => $redis->lpop(rkey('nolist')));
    attempt('ZSCORE missing', fn () => $redis->zscore(rkey('nozset'), 'm'));
    attempt('BLPOP timeout (nil array)', fn () => $redis->executeRaw(['BLPOP', rkey('nolist'), '0.1']));
    attempt('raw GET missing', fn () => $redis->executeRaw(['GET', rkey('missing')]));
    $redis->disconnect();
}

/** PHP-FPM: every request builds a client, which connects, authenticates and selects its db, works and goes. */
function predis_per_request(array $t): void
{
    for ($i = 0; $i < 20; $i++) {
        $auth = $i % 2 ? [$t['user'], $t['acl_password']] : $t['password'];
        $redis = connect_to($t, $auth, ['database' => 1]);
        attempt("request $i INCR", fn () => $redis->incr(rkey('hits')));
        attempt("request $i GET", fn () => $redis->get(rkey('hits')));
        $redis->disconnect();
    }
    $redis = connect_to($t, $t['password'], ['database' => 1]);
    $redis->del([rkey('hits')]);
    $redis->disconnect();
}

main($argv, 'predis_');
