"""docs/API.md is the repository's copy of the contract ../shared/API.md."""
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "API.md")


@pytest.mark.skipif(not os.path.exists(SHARED), reason="../shared/API.md is not beside this clone")
def test_docs_api_md_is_in_sync_with_the_contract():
    with open(SHARED) as shared, open(os.path.join(REPO, "docs", "API.md")) as ours:
        assert ours.read() == shared.read(), "docs/API.md differs from ../shared/API.md: copy it"
