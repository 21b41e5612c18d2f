"""Builds the optional C hot path (shipper/_native.c); everything else is in pyproject.toml.

`optional=True`: where no C compiler is available the install still succeeds and the shipper
runs its pure-Python path, which produces the very same records and bytes, only slower
(`shipper run` logs which one it uses).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "shipper._native",
            ["shipper/_native.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
