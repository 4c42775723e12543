"""The gateway's core: the vendor contract and the primitives every layer shares.

``core`` imports neither the server (``gateway``) nor any vendor package (``adapters.*``);
vendor packages import only ``core``; the server imports ``core`` and discovers vendors
through their :class:`core.plugin.VendorSpec` (docs/architecture.md §1).
``tests/unit/test_import_direction.py`` fails on any import against that direction.
"""
