"""The long-term Store: LangGraph's `BaseStore` on the project's engine and migrations."""

from stepstream.server.storage.store.execute import MAX_ITEM_BYTES, ItemTooLargeError
from stepstream.server.storage.store.store import SQLStore
from stepstream.server.storage.store.vectors import ExactScanIndex, VectorIndex

__all__ = ["MAX_ITEM_BYTES", "ExactScanIndex", "ItemTooLargeError", "SQLStore", "VectorIndex"]
