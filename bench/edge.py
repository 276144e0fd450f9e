"""The gate's cost at the edge: requests to an archive through nginx, gated
(the generated configuration of an enforced server, decisions cached) against
ungated (the same server's configuration without the gate), in alternating
rounds on the same machine.

The archive is bench/stub.py; the registry is a stub verify answering 204
with ``Cache-Control: max-age=30`` as the real one does, so after the first
request of a token every decision comes from nginx's cache: what is measured
is the gate's own cost (the auth_request subrequest and the cache lookup).
The registry's verify itself is measured through gunicorn elsewhere.

    python -m bench.edge            # prints a JSON result
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.env import ROOT, base_env
from bench.load import run_load

NGINX = "/usr/sbin/nginx"
MIN_RATIO = 0.9
TOKEN = "bench-token"
QIDO = "/archive/1/dicom-web/studies"


class VerifyStub(BaseHTTPRequestHandler):
    """The registry's verify, as the edge sees it: 204 and a max-age for the
    bench's token, 401 for anything else."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    asked = 0

    def do_GET(self) -> None:
        VerifyStub.asked += 1
        granted = self.headers.get("Authorization") == f"Bearer {TOKEN}"
        self.send_response(204 if granted else 401)
        self.send_header(
            "Cache-Control",
            "max-age=30, stale-if-error=300" if granted else "no-store",
        )
        self.send_header("Content-Length", "0")
        self.end_headers()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def configs(archive_port: int, registry_port: int) -> tuple[str, str]:
    """The generated nginx configurations of one server, gated and not
    (Django set up with the bench's settings, in this process)."""
    os.environ.update(
        {k: v for k, v in base_env().items() if k.startswith(("DJANGO_", "PYTHONPATH"))}
    )
    os.environ["REGISTRY_PUBLIC_ORIGIN"] = f"http://127.0.0.1:{registry_port}"
    import django

    django.setup()
    from integrations.connectivity import proxyconfig
    from integrations.models import DicomWebServer, Institution

    def server(pk: int, enforced: bool) -> DicomWebServer:
        url = f"http://127.0.0.1:{archive_port}/archive/1/dicom-web"
        return DicomWebServer(
            pk=pk,
            institution=Institution(name="Bench Hospital"),
            name="Bench PACS",
            qido_url=url,
            wado_url=url,
            edge_enforced=enforced,
        )

    gated = proxyconfig.render_gated(server(1, True), "1.bench-edge-key")["nginx"]
    return gated, proxyconfig.render(server(2, False), "nginx")


def patch(config: str, port: int, cache: Path) -> str:
    """Only the listen line (plain HTTP on loopback) and the cache folder."""
    config = re.sub(r"listen 443 ssl;", f"listen 127.0.0.1:{port};", config, count=1)
    config = re.sub(r"\n\s*listen \[::\]:443 ssl;", "", config)
    config = re.sub(r"\n\s*ssl_certificate(_key)? \S+;", "", config)
    return re.sub(
        r"^proxy_cache_path \S+ ", f"proxy_cache_path {cache} ", config, flags=re.M
    )


def start_nginx(work: Path, sites: list[str]) -> subprocess.Popen:
    for sub in ("logs", "temp"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    main = work / "nginx.conf"
    main.write_text(
        f"""
pid {work}/nginx.pid;
error_log {work}/logs/error.log;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {work}/temp/body;
    proxy_temp_path {work}/temp/proxy;
    {"".join(sites)}
}}
"""
    )
    subprocess.run(
        [NGINX, "-t", "-p", str(work), "-c", str(main)], check=True, capture_output=True
    )
    return subprocess.Popen(
        [NGINX, "-p", str(work), "-c", str(main), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait(url: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=2
            ):
                return
        except (OSError, urllib.error.HTTPError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def run(duration: float = 2.0, rounds: int = 8) -> dict[str, Any]:
    archive_port, registry_port = free_port(), free_port()
    gated_port, open_port = free_port(), free_port()
    gated, ungated = configs(archive_port, registry_port)
    archive = subprocess.Popen(
        [sys.executable, "-m", "bench.stub", "--port", str(archive_port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    registry = ThreadingHTTPServer(("127.0.0.1", registry_port), VerifyStub)
    threading.Thread(target=registry.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as folder:
        work = Path(folder)
        work.chmod(0o755)  # nginx's workers (nobody) write the cache there
        nginx = start_nginx(
            work,
            [
                patch(gated, gated_port, work / "edge-cache"),
                patch(ungated, open_port, work / "unused"),
            ],
        )
        headers = {"Authorization": f"Bearer {TOKEN}", "Origin": "https://pacsbin.com"}
        try:
            wait(f"http://127.0.0.1:{archive_port}{QIDO}", {})
            wait(f"http://127.0.0.1:{gated_port}/archive/1/dicom-web/studies", headers)
            phases: dict[str, list[dict[str, Any]]] = {"gated": [], "ungated": []}
            order = [("gated", gated_port), ("ungated", open_port)]
            for number in range(rounds):
                for label, port in order if number % 2 == 0 else order[::-1]:
                    phases[label] += run_load(
                        port, [QIDO], "", [""], duration, headers=headers
                    )
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)
            archive.terminate()
            archive.wait(timeout=10)
            registry.shutdown()
    result: dict[str, Any] = {
        "archive": "bench/stub.py",
        "registry": "stub verify, decisions cached (max-age=30)",
        "rounds": rounds,
        "phase_s": duration,
        "registry_asked": VerifyStub.asked,
    }
    for label, measured in phases.items():
        result[f"{label}_rps"] = statistics.median(p["rps"] for p in measured)
        result[f"{label}_p50_ms"] = statistics.median(p["p50_ms"] for p in measured)
        result[f"{label}_p99_ms"] = statistics.median(p["p99_ms"] for p in measured)
        result[f"{label}_errors"] = sum(sum(p["errors"].values()) for p in measured)
    result["ratio"] = result["gated_rps"] / result["ungated_rps"]
    result["target"] = f"gated/ungated {result['ratio']:.2f} (≥ {MIN_RATIO}) " + (
        "✓" if result["ratio"] >= MIN_RATIO else "✗"
    )
    return result


def table(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            "The gate through nginx (decisions cached), archive bench/stub.py:",
            f"  gated   {result['gated_rps']:>8.0f} req/s  p50 "
            f"{result['gated_p50_ms']:.2f} ms  p99 {result['gated_p99_ms']:.2f} ms",
            f"  ungated {result['ungated_rps']:>8.0f} req/s  p50 "
            f"{result['ungated_p50_ms']:.2f} ms  p99 {result['ungated_p99_ms']:.2f} ms",
            f"  {result['target']}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    result = run(args.duration, args.rounds)
    print(table(result), file=sys.stderr)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
