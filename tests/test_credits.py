"""A feature worker's credit ledger (workers/credits.py): fair shares, leases, acknowledgements."""

from __future__ import annotations

import pytest

from configs.settings import ConfigError
from streamer.transport import wire
from workers.credits import SILENT_LEASES, CreditLedger


def _grants(messages: list[tuple[bytes, wire.Credit]]) -> dict[bytes, int]:
    return {identity: credit.grant for identity, credit in messages}


def test_room_is_shared_round_the_captures_one_credit_at_a_time():
    ledger = CreditLedger(lease_s=1.0)
    for name in (b"a", b"b", b"c"):
        ledger.hello(name, wire.Hello(stream=name.decode(), want=4, t=0.0), now=0.0)
    assert _grants(ledger.messages(room=7, now=0.0, eta_ms=5.0)) == {b"a": 3, b"b": 2, b"c": 2}
    assert ledger.outstanding() == 7
    # The next round starts one capture later, so the first one is not always favoured.
    ledger.expire(now=2.0)
    assert ledger.outstanding() == 0 and ledger.expired == 7
    assert _grants(ledger.messages(room=1, now=2.0, eta_ms=5.0)) == {b"b": 1}


def test_a_capture_gets_a_second_credit_only_once_every_capture_holds_one():
    ledger = CreditLedger(lease_s=1.0)
    for name in (b"a", b"b", b"c"):
        ledger.hello(name, wire.Hello(stream=name.decode(), want=2, t=0.0), now=0.0)
    assert _grants(ledger.messages(room=4, now=0.0, eta_ms=0.0)) == {b"a": 2, b"b": 1, b"c": 1}
    ledger.frame(b"c", now=0.01)  # c spent its credit: it now holds none, b still holds one
    # This round starts at b, but c holds fewer: the one free credit is c's.
    assert _grants(ledger.messages(room=1, now=0.02, eta_ms=0.0)) == {b"c": 1}


def test_a_camera_holds_one_credit_and_gets_the_next_when_it_spent_it():
    ledger = CreditLedger(lease_s=1.0)
    ledger.hello(b"cam", wire.Hello(stream="cam", want=1, t=0.0), now=0.0)
    assert _grants(ledger.messages(room=16, now=0.0, eta_ms=0.0)) == {b"cam": 1}
    assert ledger.messages(room=16, now=0.1, eta_ms=0.0) == []  # nothing new to say
    ledger.frame(b"cam", now=0.2)
    assert ledger.used == 1 and ledger.outstanding() == 0
    assert _grants(ledger.messages(room=16, now=0.2, eta_ms=0.0)) == {b"cam": 1}


def test_every_hello_is_answered_with_the_acknowledgements_even_without_room():
    ledger = CreditLedger(lease_s=1.0)
    ledger.hello(b"file", wire.Hello(stream="file", want=8, t=0.0), now=0.0)
    ledger.messages(room=2, now=0.0, eta_ms=0.0)
    for seq in (0, 1):
        ledger.frame(b"file", now=0.1)
        ledger.finished(b"file", seq)
    ledger.hello(b"file", wire.Hello(stream="file", want=8, t=0.5), now=0.5)
    [(identity, credit)] = ledger.messages(room=0, now=0.5, eta_ms=12.0)
    assert (identity, credit.grant, credit.done, credit.eta_ms) == (b"file", 0, [0, 1], 12.0)
    assert credit.worker == ledger.worker_id and credit.lease_ms == 1000.0


def test_frames_without_credit_are_taken_and_counted_and_silent_captures_are_forgotten():
    ledger = CreditLedger(lease_s=1.0)
    ledger.frame(b"pusher", now=0.0)  # push dispatch: never said hello
    assert ledger.uncredited == 1
    ledger.hello(b"gone", wire.Hello(stream="gone", want=1, t=0.0), now=0.0)
    ledger.messages(room=1, now=0.0, eta_ms=0.0)
    ledger.expire(now=SILENT_LEASES * 1.0 + 0.1)
    assert ledger.peers == {} and ledger.forgotten == 1 and ledger.outstanding() == 0


def test_a_lease_of_zero_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="features.credit_lease_s"):
        CreditLedger(lease_s=0.0)
