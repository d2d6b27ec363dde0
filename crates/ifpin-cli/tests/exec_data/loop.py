#!/usr/bin/python3
"""Keeps trying, every 0.1 s, with a new socket each time, until STOPFILE exists (or 60 s):

  loop.py STOPFILE connect DST4 PORT         TCP connect, read the peer's label
  loop.py STOPFILE pktinfo FRONT_IF DST4 PORT UDP sendmsg with IP_PKTINFO = FRONT_IF

Prints "pid N" first, then one line per attempt: "ok LABEL" or "err ERRNO".
"""
import errno
import os
import socket
import struct
import sys
import time

stop, mode = sys.argv[1], sys.argv[2]
print("pid", os.getpid(), flush=True)
deadline = time.monotonic() + 60
while not os.path.exists(stop) and time.monotonic() < deadline:
    try:
        if mode == "connect":
            dst, port = sys.argv[3], int(sys.argv[4])
            with socket.create_connection((dst, port), timeout=0.3) as s:
                label = s.recv(64).decode().strip()
            print("ok", label, flush=True)
        else:
            front_if, dst, port = sys.argv[3], sys.argv[4], int(sys.argv[5])
            info = struct.pack("=i4s4s", socket.if_nametoindex(front_if), bytes(4), bytes(4))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendmsg([b"loop"], [(socket.IPPROTO_IP, 8, info)], 0, (dst, port))
            print("ok sent", flush=True)
    except OSError as e:
        name = errno.errorcode.get(e.errno, "unknown") if e.errno else type(e).__name__
        print("err", name, flush=True)
    time.sleep(0.1)
