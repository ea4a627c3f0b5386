"""The HTTP fuzz of tests/test_serve_hostile.py against a server in this process, with its peak memory
(issue 44: under 1.5 GB across the whole fuzz) and the slowest /health answer.

    python experiments/scripts/http_fuzz_peak.py
"""
import resource
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
import httpx

from tests.test_serve_hostile import hostile_requests
from thinkgen.serve import BackgroundServer
from thinkgen.tiny import tiny_pipeline

server = BackgroundServer(tiny_pipeline(seed=0), model_name="tiny", capacity=16, window_s=0.05)
cases = list(hostile_requests(server.url, server.port))
codes = {}
slow = 0.0
with httpx.Client(timeout=120) as http:
    for i, (m, u, o) in enumerate(cases):
        r = http.request(m, u, **o)
        codes[r.status_code // 100] = codes.get(r.status_code // 100, 0) + 1
        if i % 10 == 0:
            start = time.perf_counter()
            http.get(server.url + "/health")
            slow = max(slow, time.perf_counter() - start)
server.close()
print(f"{len(cases)} requests, status classes {codes}, slowest /health {slow * 1000:.0f} ms, "
      f"peak RSS of the whole process (server, model, client) {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
