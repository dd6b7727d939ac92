"""Bytes on the wire: RESP request parsing, reply framing and encoding, and Redis glob patterns."""
