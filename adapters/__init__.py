"""Vendor adapters: the shared contract (base.py) and one thin package per vendor."""
