"""Every effect and timer the service can stage has something that runs it, and every name it
runs is a declared kind: a staged effect with no executor, or a timer with no handler, would wait
forever."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from bot.app import build_runtime
from bot.config import Settings
from storage.kinds import AlertKind, EffectKind, TimerKind


def _runtime_keys() -> tuple[set[str], set[str]]:
    settings = Settings.from_env(
        {
            "KEYTURN_DATABASE_URL": "sqlite://:memory:",
            "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        }
    )
    runtime = build_runtime(settings)
    return set(runtime.dispatcher.executors), set(runtime.timers.handlers)


def test_every_executor_runs_a_declared_effect_kind_and_every_kind_has_one() -> None:
    executors, _ = _runtime_keys()
    assert executors == {kind.value for kind in EffectKind}


def test_every_timer_handler_runs_a_declared_timer_kind_and_every_kind_has_one() -> None:
    _, handlers = _runtime_keys()
    assert handlers == {kind.value for kind in TimerKind}


def test_a_kind_and_its_stored_string_are_the_same() -> None:
    assert EffectKind.ALERT_SHOW == "alert.show"
    assert TimerKind.HANDOFF_IDLE == "handoff.idle"
    assert AlertKind.ID_REVIEW == "id_review"
    assert {"id_review": 1}[AlertKind.ID_REVIEW] == 1


def test_a_kind_declared_by_two_packages_is_refused_at_start_up() -> None:
    """Two packages claiming one effect kind would leave one of them never run."""
    from bot.runtime import declared

    def mine() -> None: ...

    def theirs() -> None: ...

    with pytest.raises(ValueError, match=r"access\.set"):
        declared({"access.set": mine}, {"access.set": theirs})
    assert declared({"access.set": mine}, replaced_by={"access.set": theirs}) == {
        "access.set": theirs
    }
