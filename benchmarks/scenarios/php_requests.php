<?php
// PHP-FPM requests in one process: php php_requests.php MODE REQUESTS SECONDS, where to connect in the environment
// (REDIS_HOST, REDIS_PORT, REDIS_PASSWORD, REDIS_USER) and the key to GET in REDIS_KEY. MODE "connect": every
// request builds a phpredis client, connects, authenticates, runs one GET and closes, as each PHP-FPM request does;
// "persistent": one client opened before the clock starts serves every GET (the ideal).
// Prints {"latencies_us": [...], "errors": N, "seconds": S}.
declare(strict_types=1);

[, $mode, $requests, $seconds] = $argv;
$host = getenv('REDIS_HOST') ?: '127.0.0.1';
$port = (int) getenv('REDIS_PORT');
$password = (string) getenv('REDIS_PASSWORD');
$auth = getenv('REDIS_USER') ? [getenv('REDIS_USER'), $password] : $password;
$key = (string) getenv('REDIS_KEY');

function open_client(string $host, int $port, string|array $auth): Redis
{
    $redis = new Redis();
    $redis->connect($host, $port, 5.0, null, 0, 10.0);  // connect and read timeouts: a hang becomes an error
    if ($auth !== '') {
        $redis->auth($auth);
    }
    return $redis;
}

$shared = $mode === 'persistent' ? open_client($host, $port, $auth) : null;
$latencies = [];
$errors = 0;
$started = hrtime(true);
$deadline = $started + (int) ((float) $seconds * 1e9);
for ($i = 0; $i < (int) $requests && hrtime(true) < $deadline; $i++) {
    $began = hrtime(true);
    try {
        if ($shared) {
            $shared->get($key);
        } else {
            $redis = open_client($host, $port, $auth);
            $redis->get($key);
            $redis->close();
        }
        $latencies[] = (hrtime(true) - $began) / 1e3;
    } catch (RedisException) {
        $errors++;
    }
}
echo json_encode(['latencies_us' => $latencies, 'errors' => $errors, 'seconds' => (hrtime(true) - $started) / 1e9]),
    "\n";
