"""Every run a search matches, page by page.

``MlflowClient.search_runs`` returns at most ``max_results`` runs (the SQL store caps a
page at 50,000) and a token for the next page; a single call with a large
``max_results`` silently drops the rest. :func:`search_all_runs` follows the tokens.
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Sequence

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

PAGE_SIZE = 1000


def search_all_runs(client: MlflowClient, experiment_ids: Sequence[str],
                    filter_string: str = "", order_by: Optional[List[str]] = None,
                    page_size: Optional[int] = None) -> Iterator[Run]:
    """Yield every run of ``experiment_ids`` that ``filter_string`` matches, in pages
    of ``page_size`` (default :data:`PAGE_SIZE`)."""
    page_size = page_size or PAGE_SIZE
    token = None
    while True:
        page = client.search_runs(list(experiment_ids), filter_string, max_results=page_size,
                                  order_by=order_by, page_token=token)
        yield from page
        token = page.token
        if not token:
            return
