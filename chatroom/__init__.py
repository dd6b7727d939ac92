"""The chatroom demo: the legacy app the sidecar exists for (aiohttp + python-socketio, one Redis connection per event).

Run it with ``python -m chatroom --host 127.0.0.1 --port 8080``; it reads ``REDIS_URL`` from the environment.
"""
