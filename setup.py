"""The optional C extension; everything else is in pyproject.toml.

``optional=True``: where it cannot be compiled (no compiler, no Python headers) the install still succeeds and
``proxy.wire.resp`` serves its pure-Python classes instead.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("proxy.wire._speedups", ["proxy/wire/_speedups.c"], optional=True,
                             extra_compile_args=["-Wall", "-Wextra", "-Wno-unused-parameter",
                                                 "-Wno-missing-field-initializers"])])
