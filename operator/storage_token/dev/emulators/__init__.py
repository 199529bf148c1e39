"""Loopback HTTP emulators of the provider key APIs, strict about the documented rules.

Contract: each emulator is an `EmulatorServer` (see `server`) started on
127.0.0.1, with a controllable `Clock` and a `FaultInjector` tests drive.
"""
