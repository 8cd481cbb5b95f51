"""The lab's ``claimx`` commands, loaded only when one of them runs."""
