"""Vendor plugins: one package per vendor, each importing only ``core`` and declaring ``SPEC``."""
