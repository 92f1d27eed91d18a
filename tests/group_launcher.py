"""Start N training processes in this process's group, as ``srun`` does, and report their exit codes.

``python tests/group_launcher.py N train.py ARGS...`` sets the environment a launcher gives each
rank (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), waits for all and
prints their exit codes as a JSON list on the last line. Unlike ``torchrun``, which starts each rank
in a session of its own and passes a signal on, this leaves every rank (and its data-loader workers)
in one group, so a signal to the group reaches each directly, as ``scancel`` does. The launcher
survives the signal itself (a handler, not an ignore, so the ranks start with the default ones).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys


def main() -> None:
    count, command = int(sys.argv[1]), sys.argv[2:]
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(count):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(count), "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": str(count), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, *command], env=env))
    codes = [p.wait() for p in procs]
    print(json.dumps(codes), flush=True)


if __name__ == "__main__":
    main()
