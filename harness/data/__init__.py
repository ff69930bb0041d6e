"""Knowledge as data (design principle 1): chips, version matrices and failure signatures as TOML files.

Read them with ``importlib.resources.files("harness.data")`` so they work from an installed package too.
"""
