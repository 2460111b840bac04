"""The simulated lock: the embedded default, with a keypad the sandbox and tests can try."""

from locks.simulated.provider import SimulatedLockProvider

__all__ = ["SimulatedLockProvider"]
