"""`make hub`: JupyterHub for a class on this machine (run as root).

    sudo make hub                                   # loopback, port 8000, learners learner1..3
    sudo make hub LEARNERS="ada grace" HUB_PORT=8010
    python -m course.hub.run --ip 0.0.0.0 --ssl-cert cert.pem --ssl-key key.pem ...

Prepares the accounts, the exchange and the configuration (`layout.py`), releases the steps to
the exchange as the instructor, starts JupyterHub and prints its URL and where the passwords
are. It listens on 127.0.0.1 unless told otherwise, and refuses any other address without TLS
(passwords would cross the network in clear). Ctrl-C (or SIGTERM) stops the hub, its proxy and
every user's server.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from course.hub.layout import HubSettings, prepare
from course.lab import choose_port, serve

DEFAULT_ROOT = "/srv/sft-course"
START_TIMEOUT = 120  # seconds for the hub to answer
STOP_GRACE = 60      # seconds for the hub to stop every server and its proxy


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return ip == "localhost"


def hub_answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/hub/api", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def start(s: HubSettings, log: Path | None = None) -> subprocess.Popen:
    """JupyterHub with the generated config; returns once it answers."""
    bin_dir = Path(sys.executable).parent
    cmd = [str(bin_dir / "jupyterhub"), "-f", str(s.state / "jupyterhub_config.py")]
    env = dict(os.environ, PATH=os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]))
    out = log.open("ab") if log else None
    proc = subprocess.Popen(cmd, cwd=s.state, env=env, stdout=out, stderr=subprocess.STDOUT
                            if out else None, start_new_session=True)
    base = f"{'https' if s.ssl_cert else 'http'}://{s.ip}:{s.port}"
    deadline = time.monotonic() + START_TIMEOUT
    while not hub_answers(base):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise SystemExit(f"error: JupyterHub did not start (exit {proc.returncode}); "
                             f"see {log or 'its log above'}")
        time.sleep(0.5)
    return proc


def stop(proc: subprocess.Popen, grace: float = STOP_GRACE) -> None:
    """SIGTERM: JupyterHub stops the users' servers and the proxy; then SIGKILL what is left
    of its process group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the proxy, if the hub could not stop it
    except ProcessLookupError:
        pass
    proc.wait()


def main(argv: list[str] | None = None) -> int:
    from course.nbgrader import released_steps

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.environ.get("HUB_ROOT") or DEFAULT_ROOT,
                    help=f"the hub's folders (default {DEFAULT_ROOT}, or HUB_ROOT)")
    ap.add_argument("--instructor", default="instructor", help="the instructor's account")
    ap.add_argument("--learners", nargs="+", default=["learner1", "learner2", "learner3"],
                    help="the learners' accounts (created if missing)")
    ap.add_argument("--ip", default="127.0.0.1", help="address to listen on (default loopback)")
    ap.add_argument("--port", type=int, default=8000, help="port of the hub (0: any free one)")
    ap.add_argument("--ssl-cert", default="", help="TLS certificate (required off loopback)")
    ap.add_argument("--ssl-key", default="", help="TLS key (required off loopback)")
    ap.add_argument("--steps", nargs="*", default=None, help="steps to release (default all)")
    ap.add_argument("--info-file", type=Path, help="write {base, ...} as JSON once it answers")
    ap.add_argument("--log", type=Path, help="JupyterHub's log (default: this terminal)")
    args = ap.parse_args(argv)
    if not is_loopback(args.ip) and not (args.ssl_cert and args.ssl_key):
        ap.error(f"refusing to listen on {args.ip} without TLS (--ssl-cert, --ssl-key): "
                 "passwords would cross the network in clear")
    s = HubSettings(root=str(Path(args.root).resolve()), instructor=args.instructor,
                    learners=args.learners, ip=args.ip, port=choose_port(args.port),
                    hub_port=choose_port(0), proxy_api_port=choose_port(0),
                    ssl_cert=args.ssl_cert, ssl_key=args.ssl_key,
                    steps=args.steps if args.steps is not None else released_steps())
    t0 = time.monotonic()
    prepare(s)
    prepared = time.monotonic() - t0
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    proc = start(s, args.log)
    base = f"{'https' if s.ssl_cert else 'http'}://{s.ip}:{s.port}"
    info = {"base": base, "pid": proc.pid, "root": s.root, "exchange": str(s.exchange),
            "passwords": str(s.state / "passwords.txt"), "prepare_s": round(prepared, 1),
            "start_s": round(time.monotonic() - t0 - prepared, 1)}
    banner = (f"\n  JupyterHub for the class is running: {base}\n"
              f"  accounts: {s.instructor} (instructor, formgrader), {', '.join(s.learners)}\n"
              f"  passwords (root only, one per account): {info['passwords']}\n"
              f"  exchange: {s.exchange}   course root: ~{s.instructor}/sft-course\n"
              f"  ready in {prepared:.0f} s (prepare) + {info['start_s']:.0f} s (start); "
              f"stop it with Ctrl-C\n")
    return serve(proc, info, args.info_file, banner,
                 "stopping JupyterHub and every user's server ...", stop)

if __name__ == "__main__":
    sys.exit(main())
