"""``python -m benchmarks <stage|all>``: the same as ``claimx bench``."""

from claimx_flow.cli.bench_cmd import main

main()
