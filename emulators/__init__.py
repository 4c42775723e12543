"""Faithful local emulators of each vendor API: the sandbox and the test doubles."""
