"""The dead-letter queue CLI: list, inspect, replay and purge the pipeline's three DLQs.

Reading (``reader``, ``browse``), choosing (``filters``), sending back (``replay`` with its
``session``), removing (``purge``) and showing (``render``, ``documents``) are separate modules;
``cli`` only wires them to Typer. Nothing here imports Bytewax.
"""
