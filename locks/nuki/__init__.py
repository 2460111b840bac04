"""Nuki smart locks through the Nuki Web API: keypad codes as time-limited authorizations."""

from locks.nuki.adapter import NukiLockProvider, keypad_code_problem

__all__ = ["NukiLockProvider", "keypad_code_problem"]
