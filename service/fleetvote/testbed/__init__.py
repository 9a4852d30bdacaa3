"""The test bed: what stands in for boards and puts the service under load. Virtual boards (the
firmware built for the host, ``virtual``) and emulated ones (STM32F4 firmware under QEMU,
``qemu``), child processes and loopback ports (``processes``), the benchmarks (``bench_*``), the
chaos and load runs and the harness they stand on (``chaos``, ``loadtest``, ``harness``), and
real-board bring-up (``bringup``: flash and probe).

Import rule: these modules may import the runtime, the offline tools and ``fleetvote.command``;
the runtime never imports them (tests/test_architecture.py). ``fleetvote serve --virtual`` wires
the virtual boards in from the CLI (``create_app(board_supply=...)``); the service itself knows
boards only by their links."""
