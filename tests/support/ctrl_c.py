"""For tests that press Ctrl-C on a pytest session they start: SIGINT must reach it.

A process started in the background by a non-interactive shell (`make test &`, a CI runner's
job) has SIGINT ignored, and an ignored signal stays ignored in every child: the inner session
would sleep through the Ctrl-C the test sends. The child gets the default action back before it
runs, so Python installs its KeyboardInterrupt handler as in a terminal."""

from __future__ import annotations

import signal


def restore_ctrl_c() -> None:
    """A `preexec_fn`: SIGINT's default action in the child about to exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
