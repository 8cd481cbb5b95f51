"""What only development needs: simulator, local stack, chaos, bench, demo.

A stage process never imports this package (an import-linter contract holds it)."""
