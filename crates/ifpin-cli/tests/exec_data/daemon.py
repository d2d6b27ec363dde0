#!/usr/bin/python3
"""Double-forks a daemon and exits at once; the daemon (detached, new session) waits 1.5 s, fetches
URL with busybox wget into OUT, tries one IP_PKTINFO datagram out of FRONT_IF to DST4:PORT,
then exits.

Usage: daemon.py URL OUT FRONT_IF DST4 PORT
"""
import os
import socket
import struct
import subprocess
import sys
import time

url, out, front_if, dst4, port = sys.argv[1:]
if os.fork() > 0:
    sys.exit(0)
os.setsid()
if os.fork() > 0:
    os._exit(0)
time.sleep(1.5)
fetched = subprocess.run(["busybox", "wget", "-q", "-O", "-", url], capture_output=True)
with open(out, "wb") as f:
    f.write(fetched.stdout)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
info = struct.pack("=i4s4s", socket.if_nametoindex(front_if), bytes(4), bytes(4))
try:
    s.sendmsg([b"daemon leak"], [(socket.IPPROTO_IP, 8, info)], 0, (dst4, int(port)))
except OSError:
    pass
os._exit(0)
