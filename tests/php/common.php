<?php
// Shared by phpredis.php and predis.php. Where to connect comes from the environment, as a PHP app's config gives
// it (REDIS_HOST, REDIS_PORT or REDIS_SOCKET, REDIS_PASSWORD, REDIS_USER); every reply is recorded in a canonical,
// JSON-encodable form, so a run against Redis and a run through the sidecar can be compared value for value.
declare(strict_types=1);

/** @return array{host: string, port: int, socket: ?string, password: string, user: string, acl_password: string} */
function target(): array
{
    return [
        'host' => getenv('REDIS_HOST') ?: '127.0.0.1',
        'port' => (int) getenv('REDIS_PORT'),
        'socket' => getenv('REDIS_SOCKET') ?: null,
        'password' => (string) getenv('REDIS_PASSWORD'),
        'user' => (string) getenv('REDIS_USER'),
        'acl_password' => (string) getenv('REDIS_USER_PASSWORD'),
    ];
}

/** Keys and channels of one run; the test deletes them before each run. */
function rkey(string $name): string
{
    return 'php:' . $name;
}

$REPLIES = [];

function record(string $label, mixed $value): void
{
    global $REPLIES;
    $REPLIES[] = [$label, canon($value)];
}

/** Record what $call returns, or the exception it throws (clients report errors both ways). */
function attempt(string $label, callable $call): void
{
    try {
        record($label, $call());
    } catch (Throwable $e) {
        record($label, ['exception' => get_class($e), 'message' => scrub($e->getMessage())]);
    }
}

/** Predis wraps status and error replies in objects; JSON needs plain values, with the kind kept. */
function canon(mixed $value): mixed
{
    if ($value instanceof Predis\Response\ErrorInterface) {
        return ['error' => $value->getMessage()];
    }
    if ($value instanceof Predis\Response\Status) {
        return ['status' => $value->getPayload()];
    }
    if (is_array($value)) {
        return array_map('canon', $value);
    }
    return $value;
}

/** Error texts name the address connected to, which differs between the two runs by design. */
function scrub(string $message): string
{
    return preg_replace('~(tcp|unix)://[^\s\]]+|127\.0\.0\.1:\d+|/\S+\.sock~', '<address>', $message);
}

/** Sets have no order; the chatroom sorts what SMEMBERS returns before showing it, and so do we. */
function sorted(array|false $members): array|false
{
    if (is_array($members)) {
        sort($members);
    }
    return $members;
}

function emit(): void
{
    global $REPLIES;
    echo json_encode($REPLIES, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_PRESERVE_ZERO_FRACTION), "\n";
}

/** Run the scenario function named on the command line, then print every recorded reply as one JSON line. */
function main(array $argv, string $prefix): void
{
    $scenario = $prefix . ($argv[1] ?? '');
    if (!function_exists($scenario)) {
        fwrite(STDERR, "usage: php {$argv[0]} SCENARIO\n");
        exit(2);
    }
    $scenario(target());
    emit();
}
