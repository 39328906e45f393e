"""Every notebook in notebooks/ runs top to bottom (nbclient, a fresh kernel each, a time
limit per notebook), and the committed notebooks carry no outputs."""
import glob
import os
import time

import pytest

nbformat = pytest.importorskip("nbformat", reason="pip install -r requirements-test.txt")
nbclient = pytest.importorskip("nbclient", reason="pip install -r requirements-test.txt")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(REPO, "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NOTEBOOK_DIR, "*.ipynb")))
TIMEOUT = 600              # seconds per cell; the whole notebook gets NOTEBOOK_BUDGET
NOTEBOOK_BUDGET = 900
NEEDS_MNIST = {"02_classifiers", "03_equivariance", "04_captioning", "05_normalization"}


def name_of(path):
    return os.path.splitext(os.path.basename(path))[0]


def test_the_notebooks_are_there():
    assert {name_of(p) for p in NOTEBOOKS} >= {
        "01_layers", "02_classifiers", "03_equivariance", "04_captioning", "05_normalization",
        "06_attention", "07_grading"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=name_of)
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"{name_of(path)} cell {index} has outputs: strip them before committing "
                f"(e.g. jupyter nbconvert --clear-output --inplace {os.path.basename(path)})")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=name_of)
def test_notebook_runs(path, tmp_path):
    if name_of(path) in NEEDS_MNIST and not os.environ.get("HANDGRAD_DATA"):
        pytest.skip("needs MNIST: set HANDGRAD_DATA to the folder holding mnist/ (CI does)")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": NOTEBOOK_DIR}})
    env = {"MPLBACKEND": "module://matplotlib_inline.backend_inline", "OPENBLAS_NUM_THREADS": "1"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    started = time.monotonic()
    try:
        client.execute()   # raises CellExecutionError, naming the cell, if one fails
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    seconds = time.monotonic() - started
    print(f"{name_of(path)}: {seconds:.1f} s")
    assert seconds < NOTEBOOK_BUDGET
    images = sum(1 for cell in notebook.cells if cell.cell_type == "code"
                 for output in cell.outputs if "image/png" in output.get("data", {}))
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.outputs if output.get("output_type") == "error"]
    assert not errors
    if name_of(path) != "07_grading":
        assert images >= 1, f"{name_of(path)} drew no picture"
