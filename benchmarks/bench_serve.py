"""Serving under load, on loopback, with the embedded ShapeWorld model: dynamic batching on vs off.

For 1, 4 and 16 concurrent clients (each sends its requests one after the other), a fixed number
of requests: images/s and p50 / p99 latency, batching on and off, interleaved in one run. Then a
burst of 4x the queue capacity at once: every request must end in 200 or 429, none in 5xx, none
hang. Bounded: a request that takes over the time limit counts as hung.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_serve.py [--requests 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import torch  # noqa: E402

from thinkgen import ThinkGenPipeline  # noqa: E402
from thinkgen.serve import BackgroundServer  # noqa: E402

EMBEDDED = Path(__file__).resolve().parents[1] / "thinkgen" / "assets" / "shapeworld"
PROMPTS = ["as many squares as a tricycle has wheels, in the colour of a ripe banana", "two red circles",
           "a blue star left of a green triangle", "as many circles as a dog has legs"]


def load(url: str, clients: int, requests: int, timeout: float) -> dict:
    latencies: list[float] = []
    codes: list[int] = []
    lock = threading.Lock()
    per_client = [requests // clients + (i < requests % clients) for i in range(clients)]

    def client(index: int, count: int) -> None:
        with httpx.Client(timeout=timeout) as http:
            for k in range(count):
                body = {"prompt": PROMPTS[(index + k) % len(PROMPTS)], "seed": index * 100 + k}
                start = time.perf_counter()
                try:
                    code = http.post(url + "/v1/images/generations", json=body).status_code
                except httpx.TimeoutException:
                    code = -1
                with lock:
                    latencies.append(time.perf_counter() - start)
                    codes.append(code)

    threads = [threading.Thread(target=client, args=(i, n)) for i, n in enumerate(per_client)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ordered = sorted(latencies)
    return {"images_s": codes.count(200) / wall, "p50": statistics.median(ordered),
            "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], "ok": codes.count(200), "n": len(codes)}


def burst(url: str, count: int, timeout: float) -> dict[str, int]:
    outcomes: dict[str, int] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            with httpx.Client(timeout=timeout) as http:
                code = http.post(url + "/v1/images/generations", json={"prompt": PROMPTS[i % 4], "seed": i}).status_code
                key = str(code) if code in (200, 429) else ("5xx" if code >= 500 else f"other {code}")
        except httpx.TimeoutException:
            key = "hung"
        with lock:
            outcomes[key] = outcomes.get(key, 0) + 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--capacity", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--window-ms", type=float, default=20, help="the batching window of `thinkgen serve`")
    args = parser.parse_args()
    pipe = ThinkGenPipeline.from_pretrained(EMBEDDED, torch_dtype=torch.float32)
    print(f"embedded ShapeWorld model, 32x32, {pipe.defaults['num_inference_steps']} steps; torch threads "
          f"{torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"load average {os.getloadavg()[0]:.2f}; {args.requests} requests per row; window {args.window_ms:g} ms")
    servers = {mode: BackgroundServer(pipe, capacity=max(args.capacity, 64), window_s=args.window_ms / 1000,
                                      batching=mode == "on")
               for mode in ("on", "off")}
    try:
        load(servers["on"].url, 2, 4, args.timeout)  # warm-up
        print("\n| clients | batching | images/s | p50 latency | p99 latency |\n|---|---|---|---|---|")
        ratios = {}
        for clients in (1, 4, 16):
            before = len(servers["on"].batcher.stats.batch_sizes)
            rows = {mode: load(servers[mode].url, clients, args.requests, args.timeout) for mode in ("on", "off")}
            sixteen = len(servers["on"].batcher.stats.batch_sizes) - before
            for mode, row in rows.items():
                print(f"| {clients} | {mode} | {row['images_s']:.2f} | {row['p50']:.2f} s | {row['p99']:.2f} s |",
                      flush=True)
            ratios[clients] = rows["on"]["images_s"] / rows["off"]["images_s"]
        print("\nbatching on / off, images/s: " + ", ".join(f"{c} clients {r:.2f}x" for c, r in ratios.items()))
        sizes = servers["on"].batcher.stats.batch_sizes
        print(f"batches with batching on: {len(sizes)}, largest {max(sizes)}, mean {statistics.mean(sizes):.1f} requests"
              f" (16 clients: mean {statistics.mean(list(sizes)[-sixteen:]):.1f})")
    finally:
        for server in servers.values():
            server.close()
    small = BackgroundServer(pipe, capacity=args.capacity, window_s=0.02)
    try:
        outcomes = burst(small.url, 4 * args.capacity, args.timeout)
    finally:
        small.close()
    print(f"\nburst of {4 * args.capacity} requests at a queue of {args.capacity}: "
          + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))
    bad = {k: v for k, v in outcomes.items() if k not in ("200", "429")}
    print("every request ended in 200 or 429" if not bad else f"FAILURES: {bad}")


if __name__ == "__main__":
    main()
