"""Does what its params say; appends the step id to <workspace>/ledger each time it runs."""
import json
import os
import sys
import time

p = json.load(sys.stdin)
workspace = os.environ["ORCHESTRATOR_WORKSPACE"]
print("working on " + os.environ["ORCHESTRATOR_STEP_ID"], file=sys.stderr, flush=True)
with open(os.path.join(workspace, "ledger"), "a") as f:
    f.write(os.environ["ORCHESTRATOR_STEP_ID"] + "\n")
if "write" in p:
    open(p["write"], "w").write("escaped")
if "alloc_mb" in p:
    hog = [bytearray(1024 * 1024) for _ in range(p["alloc_mb"])]
if p.get("fork") and os.fork() == 0:  # the child forks again in a new session, and exits
    os.setsid()
    if os.fork() == 0:
        with open(os.path.join(workspace, "grandchild"), "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
    os._exit(0)
time.sleep(p.get("sleep", 0))
print(json.dumps({"step": os.environ["ORCHESTRATOR_STEP_ID"], "slept": p.get("sleep", 0)}))
