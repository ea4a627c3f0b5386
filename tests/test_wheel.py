"""The wheel carries everything the package reads at run time: built from the tree, installed into a
fresh environment (the test environment's packages underneath, for torch and the other
dependencies), it draws with its embedded model and serves its page from outside the repository."""

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_generates_and_serves_outside_the_repository(tmp_path):
    # built from the tracked files alone, as a clean clone would build it (no stale build/ folder)
    source = tmp_path / "source"
    tracked = subprocess.run(["git", "ls-files", "pyproject.toml", "README.md", "LICENSE", "thinkgen"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), str(source)], check=True, capture_output=True, timeout=600)
    wheel = next(wheels.glob("thinkgen-*.whl"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=600)
    # the wheel's thinkgen first, then the dependencies; never the repository (not on the path, not the cwd)
    dependencies = sysconfig.get_paths()["purelib"]
    env = {**os.environ, "PYTHONPATH": f"{target}:{dependencies}", "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    work = tmp_path / "elsewhere"
    work.mkdir()
    python = [sys.executable, "-S"]  # -S: no site processing, so the editable install's finder stays out
    where = subprocess.run([*python, "-c", "import thinkgen; print(thinkgen.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(target)), where
    drawn = subprocess.run([*python, "-m", "thinkgen.cli", "generate", "two red circles", "-o", "out.png"],
                           cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    assert (work / "out.png").stat().st_size > 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([*python, "-m", "thinkgen.cli", "serve", "--port", str(port)], cwd=work, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, page = time.monotonic() + 300, None
        while page is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = (response.status, response.read().decode())
            except urllib.error.HTTPError as error:  # the server answered, with an error: no retry
                page = (error.code, error.read().decode())
            except OSError:  # not listening yet
                time.sleep(1)
        assert page is not None, server.stderr.read()[-2000:] if server.poll() is not None else "no answer"
        assert page[0] == 200 and "<html" in page[1].lower()
    finally:
        server.terminate()
        server.wait(timeout=30)
