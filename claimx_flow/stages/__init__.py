"""Each pipeline stage as plain functions from consumed records to what they produce.

The dataflows only wire these to Kafka, Delta and each other; the logic runs and is tested
without a stream runtime.
"""

from claimx_flow.stages.outputs import (
    RowBatch,
    RowOutput,
    SourcedRow,
    StageBatch,
    StageOutput,
    TableRow,
)

__all__ = ["RowBatch", "RowOutput", "SourcedRow", "StageBatch", "StageOutput", "TableRow"]
