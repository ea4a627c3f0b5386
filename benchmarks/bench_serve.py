"""Serving under load, on loopback, with the embedded ShapeWorld model: dynamic batching on vs off.

For 1, 4 and 16 concurrent clients (each sends its requests one after the other), a fixed number
of requests: images/s and p50 / p99 latency, batching on and off, interleaved in one run. Then a
burst of 4x the queue capacity at once: every request must end in 200 or 429, none in 5xx, none
hang. Bounded: a request that takes over the time limit counts as hung. The servers are real
``thinkgen serve`` processes (``--in-process``: threads of this one, sharing its interpreter lock
with the clients).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_serve.py [--requests 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import harness  # noqa: E402, F401  (before torch: OMP_WAIT_POLICY=PASSIVE, for the servers too)

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


class ServeProcess:
    """``thinkgen serve`` as its own process, on a free loopback port."""

    def __init__(self, queue: int, window_ms: float, batching: bool) -> None:
        import socket
        import subprocess

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [sys.executable, "-m", "thinkgen.cli", "serve", "--port", str(port), "--queue", str(queue),
                   "--window-ms", str(window_ms)] + ([] if batching else ["--no-batching"])
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("thinkgen serve did not start")
            time.sleep(0.2)

    def batch_sizes(self) -> list[float]:
        """Requests per batch, from /metrics: (batches, requests)."""
        text = httpx.get(self.url + "/metrics").text
        values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("thinkgen_batch_size_"))
        return [float(values["thinkgen_batch_size_count"]), float(values["thinkgen_batch_size_sum"])]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _batches(server) -> list[float]:
    if isinstance(server, BackgroundServer):
        sizes = list(server.batcher.stats.batch_sizes)
        return [len(sizes), sum(sizes)]
    return server.batch_sizes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--capacity", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--window-ms", type=float, default=20, help="the batching window of `thinkgen serve`")
    parser.add_argument("--in-process", action="store_true", help="servers as threads of this process")
    args = parser.parse_args()
    pipe = ThinkGenPipeline.from_pretrained(EMBEDDED, torch_dtype=torch.float32) if args.in_process else None
    print(harness.environment(torch.get_num_threads()))
    print(f"embedded ShapeWorld model, 32x32, 20 steps; "
          f"{args.requests} requests per row; window {args.window_ms:g} ms; servers "
          f"{'in this process' if args.in_process else 'in their own processes'}")
    if args.in_process:
        servers = {mode: BackgroundServer(pipe, capacity=max(args.capacity, 64), window_s=args.window_ms / 1000,
                                          batching=mode == "on") for mode in ("on", "off")}
    else:
        servers = {mode: ServeProcess(max(args.capacity, 64), args.window_ms, mode == "on") for mode in ("on", "off")}
    try:
        load(servers["on"].url, 2, 4, args.timeout)  # warm-up
        load(servers["off"].url, 1, 2, args.timeout)
        print("\n| clients | batching | images/s | p50 latency | p99 latency |\n|---|---|---|---|---|")
        ratios, mean_batch = {}, {}
        with harness.IdleCheck() as idle:
            for clients in (1, 4, 16):
                before = _batches(servers["on"])
                rows = {mode: load(servers[mode].url, clients, args.requests, args.timeout) for mode in ("on", "off")}
                after = _batches(servers["on"])
                mean_batch[clients] = (after[1] - before[1]) / max(1, after[0] - before[0])
                for mode, row in rows.items():
                    print(f"| {clients} | {mode} | {row['images_s']:.2f} | {row['p50']:.2f} s | {row['p99']:.2f} s |",
                          flush=True)
                ratios[clients] = rows["on"]["images_s"] / rows["off"]["images_s"]
        print(idle)
        print("\nbatching on / off, images/s: " + ", ".join(f"{c} clients {r:.2f}x" for c, r in ratios.items()))
        print("mean requests per batch with batching on: " + ", ".join(f"{c} clients {m:.1f}"
                                                                      for c, m in mean_batch.items()))
    finally:
        for server in servers.values():
            server.close()
    small = (BackgroundServer(pipe, capacity=args.capacity, window_s=args.window_ms / 1000) if args.in_process
             else ServeProcess(args.capacity, args.window_ms, True))
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
