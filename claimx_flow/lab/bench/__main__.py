"""``python -m claimx_flow.lab.bench <stage|all>``: the same as ``claimx bench``."""

from claimx_flow.lab.cli.bench_cmd import main

main()
