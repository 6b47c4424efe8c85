#!/usr/bin/env python3
"""ports.py open HOST:PORT...        print the ones that accept TCP now
   ports.py wait SECONDS HOST:PORT... poll every 50 ms until all accept;
                                      on timeout print the others, exit 1
One process for hundreds of ports (a bash /dev/tcp probe forks per port)."""
import socket
import sys
import time


def accepts(hp):
    host, port = hp.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if sys.argv[1] == "open":
        for hp in sys.argv[2:]:
            if accepts(hp):
                print(hp)
        return 0
    if sys.argv[1] == "wait":
        deadline = time.monotonic() + float(sys.argv[2])
        pending = sys.argv[3:]
        while True:
            pending = [hp for hp in pending if not accepts(hp)]
            if not pending:
                return 0
            if time.monotonic() >= deadline:
                print("\n".join(pending))
                return 1
            time.sleep(0.05)
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
