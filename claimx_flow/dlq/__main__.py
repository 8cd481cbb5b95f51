from claimx_flow.dlq.cli import main

main()
