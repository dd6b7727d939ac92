"""The optional C extension; everything else is in pyproject.toml.

Optional: where it cannot be compiled (no compiler, no Python headers) the install still succeeds and
``proxy.wire.resp`` serves its pure-Python classes instead; ``REDIS_SIDECAR_REQUIRE_EXTENSIONS=1`` makes a failed
compile fail the build (the container image uses it, so it never ships the slower path unnoticed).
"""

import os

from setuptools import Extension, setup

REQUIRED = os.environ.get("REDIS_SIDECAR_REQUIRE_EXTENSIONS") == "1"

setup(ext_modules=[Extension("proxy.wire._speedups", ["proxy/wire/_speedups.c"], optional=not REQUIRED,
                             extra_compile_args=["-Wall", "-Wextra", "-Wno-unused-parameter",
                                                 "-Wno-missing-field-initializers"])])
