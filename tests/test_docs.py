"""docs/API.md is the repository's copy of the contract ../shared/API.md."""
import importlib
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "API.md")


@pytest.mark.skipif(not os.path.exists(SHARED), reason="../shared/API.md is not beside this clone")
def test_docs_api_md_is_in_sync_with_the_contract():
    with open(SHARED) as shared, open(os.path.join(REPO, "docs", "API.md")) as ours:
        assert ours.read() == shared.read(), "docs/API.md differs from ../shared/API.md: copy it"



def github_anchor(heading):
    """The anchor GitHub gives a markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_derivations_and_docstrings_link_each_other():
    with open(os.path.join(REPO, "docs", "derivations.md"), encoding="utf-8") as f:
        text = f.read()
    anchors = {github_anchor(line[3:]) for line in text.splitlines() if line.startswith("## ")}
    assert set(re.findall(r"\]\(#([\w-]+)\)", text)) <= anchors   # the table of contents
    linked = set()
    for module in ("layers", "rnn_layers", "attention_layers"):
        with open(os.path.join(REPO, module + ".py"), encoding="utf-8") as f:
            for anchor in re.findall(r"Derivation: docs/derivations\.md#([\w-]+)", f.read()):
                assert anchor in anchors, (module, anchor)
                linked.add(anchor)
    assert len(linked) >= 10
    # every function a section links to exists: "[`layers.fc_forward` / `fc_backward`](../layers.py)";
    # "`_backward`" after "`x_forward`" is short for x_backward
    for link_text, module in re.findall(r"\[([^\]]+)\]\(\.\./(\w+)\.py\)", text):
        imported = importlib.import_module(module)
        previous = ""
        for token in re.findall(r"`([\w.]+)`", link_text):
            if token.endswith(".py"):   # the file itself
                continue
            name = token.rsplit(".", 1)[-1]
            if name.startswith("_"):
                name = previous.rsplit("_", 1)[0] + name
            assert callable(getattr(imported, name, None)), (module, name)
            previous = name
