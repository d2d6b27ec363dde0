#!/usr/bin/python3
"""Prints the name of each forwarded signal it receives; exits 42 on SIGTERM.

Prints "ready" once its handlers are installed.
"""
import signal
import sys
import time


def handler(signum, _frame):
    name = signal.Signals(signum).name
    print(name, flush=True)
    if signum == signal.SIGTERM:
        sys.exit(42)


for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT):
    signal.signal(sig, handler)
print("ready", flush=True)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    time.sleep(0.05)
sys.exit(3)
