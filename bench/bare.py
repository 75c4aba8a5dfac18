"""Worker of the bare-Temporal baseline (``bench.bare_workflows``), as its own process.

``python -m bench.bare --address HOST:PORT --task-queue Q [--unsandboxed]``: the bench
starts it like ``mosaic gateway worker``, with default worker options;
``--unsandboxed`` (an experiment) uses ``UnsandboxedWorkflowRunner``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from bench.bare_activities import ACTIVITIES
from bench.bare_workflows import BareRedeem


async def run_worker(address: str, task_queue: str, *, unsandboxed: bool) -> None:
    client = await Client.connect(address)
    runner = UnsandboxedWorkflowRunner() if unsandboxed else SandboxedWorkflowRunner()
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[BareRedeem],
        activities=ACTIVITIES,
        workflow_runner=runner,
    )
    await worker.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--unsandboxed", action="store_true")
    args = parser.parse_args()
    try:
        asyncio.run(run_worker(args.address, args.task_queue, unsandboxed=args.unsandboxed))
    except KeyboardInterrupt:
        pass
    gc.collect()  # sdk-python#300: avoids a crash at interpreter exit


if __name__ == "__main__":
    main()
