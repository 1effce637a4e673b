"""While the local runner waits for its trainer, Ctrl-C (SIGINT, sent to this very process here) only
sets a flag that the wait loop checks; nothing is raised in the middle of other code, and the previous
handler comes back afterwards."""

from __future__ import annotations

import os
import signal
import threading
import time

from tuneline.local.runner import _ctrl_c_as_flag


def test_ctrl_c_sets_the_flag_instead_of_raising_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGINT)
    with _ctrl_c_as_flag() as ctrl_c:
        assert not ctrl_c.pressed
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while not ctrl_c.pressed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ctrl_c.pressed
    assert signal.getsignal(signal.SIGINT) is before


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
