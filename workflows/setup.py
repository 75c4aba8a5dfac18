"""Prepare any Temporal namespace for Mosaic: the custom search attributes ops search by.
(The dev server gets them from ``--search-attribute`` flags at start.)"""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

SEARCH_ATTRIBUTES = ("GrantId", "PeerId", "EnrollmentOutcome")


async def register_search_attributes(client: Client, namespace: str) -> list[str]:
    """Add the missing Keyword attributes; returns the names added (none on a rerun)."""
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = [name for name in SEARCH_ATTRIBUTES if name not in listed.custom_attributes]
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=namespace,
                    search_attributes=dict.fromkeys(
                        missing, IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                    ),
                )
            )
        except RPCError as exc:
            # The listing lags a fresh addition: a concurrent or just-finished setup won.
            if exc.status != RPCStatusCode.ALREADY_EXISTS:
                raise
            return []
    return missing
