"""comfysim: a ComfyUI-compatible simulator (aiohttp), faithful to real captures.

Stands in for a real ComfyUI 0.3.64 server in tests and demos: same HTTP routes,
status codes, bodies, websocket event order and validation errors, with real
Pillow image nodes, synthetic SD1.5 nodes, and fault injection.

Programmatic use::

    from comfysim import run_simulator

    async with run_simulator(port=0, root=tmp_path, render_seconds=0.05) as sim:
        ...  # talk to sim.url / sim.ws_url

Command line: ``python -m comfysim --port 8190 --root /tmp/x``.
"""

from comfysim.config import SimConfig, SimStats
from comfysim.faults import FaultSpec, FaultSpecError, parse_cli_fault
from comfysim.server import Simulator, run_simulator

__all__ = [
    "FaultSpec",
    "FaultSpecError",
    "SimConfig",
    "SimStats",
    "Simulator",
    "parse_cli_fault",
    "run_simulator",
]
