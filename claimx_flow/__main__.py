from claimx_flow.cli import main

main()
