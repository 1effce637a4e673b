"""While the local runner waits for its trainer, Ctrl-C (SIGINT, sent to this very process here) only
sets a flag that the wait loop checks; nothing is raised in the middle of other code, and the previous
handler comes back afterwards."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from tuneline.local.runner import _ctrl_c_as_flag, stop_signals_interrupt


@pytest.mark.parametrize("sent,how", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM"),
                                      (signal.SIGHUP, "SIGHUP")])
def test_ctrl_c_sets_the_flag_instead_of_raising_and_the_old_handler_comes_back(sent, how):
    before = signal.getsignal(sent)
    with _ctrl_c_as_flag() as ctrl_c:
        assert not ctrl_c.pressed
        os.kill(os.getpid(), sent)
        deadline = time.monotonic() + 5
        while not ctrl_c.pressed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ctrl_c.pressed and ctrl_c.how == how
    assert signal.getsignal(sent) is before


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGHUP])
def test_termination_signals_interrupt_like_ctrl_c_while_tuneline_run_runs(sent):
    """They used to end the process at once, skipping the clean-up `tuneline run` does on Ctrl-C."""
    before = signal.getsignal(sent)
    with pytest.raises(KeyboardInterrupt) as raised, stop_signals_interrupt():
        os.kill(os.getpid(), sent)
        time.sleep(5)
    assert raised.value.args == (signal.Signals(sent).name,)
    assert signal.getsignal(sent) is before


def test_outside_the_main_thread_no_handler_is_installed():
    seen = {}

    def worker():
        with _ctrl_c_as_flag() as ctrl_c:
            seen["handler"] = signal.getsignal(signal.SIGINT)
            seen["pressed"] = ctrl_c.pressed
    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"handler": before, "pressed": False}


def test_an_ignored_sighup_stays_ignored_under_nohup():
    """`nohup tuneline run` ignores SIGHUP: a closed terminal must not end that run."""
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_signals_interrupt(), _ctrl_c_as_flag() as ctrl_c:
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.2)
            assert not ctrl_c.pressed
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)
