"""Every notebook in notebooks/ runs top to bottom (nbclient, a fresh kernel each, a time
limit per notebook), and the committed notebooks carry no outputs."""
import glob
import os
import re
import signal
import subprocess
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat", reason="pip install -r requirements-test.txt")
nbclient = pytest.importorskip("nbclient", reason="pip install -r requirements-test.txt")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(REPO, "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NOTEBOOK_DIR, "*.ipynb")))
TIMEOUT = 600              # seconds per cell (nbclient's limit)
NOTEBOOK_BUDGET = 900      # seconds for a whole notebook, enforced by killing its process
NEEDS_MNIST = {"02_classifiers", "03_equivariance", "04_captioning", "05_normalization"}
# every figure a notebook draws must reach its output (importing a module that switched
# matplotlib to Agg after %matplotlib inline once made notebook 02 show none of its four)
IMAGES = {"01_layers": 2, "02_classifiers": 4, "03_equivariance": 2, "04_captioning": 3,
          "05_normalization": 2, "06_attention": 1, "07_grading": 0}


def name_of(path):
    return os.path.splitext(os.path.basename(path))[0]


def test_the_notebooks_are_there():
    assert {name_of(p) for p in NOTEBOOKS} >= {
        "01_layers", "02_classifiers", "03_equivariance", "04_captioning", "05_normalization",
        "06_attention", "07_grading", "08_sanity_checks"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=name_of)
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"{name_of(path)} cell {index} has outputs: strip them before committing "
                f"(e.g. jupyter nbconvert --clear-output --inplace {os.path.basename(path)})")


RUNNER = """
import sys, nbformat, nbclient
path, directory, timeout, output = sys.argv[1:5]
notebook = nbformat.read(path, as_version=4)
try:
    nbclient.NotebookClient(notebook, timeout=int(timeout), kernel_name="python3",
                            resources={"metadata": {"path": directory}}).execute()
finally:
    nbformat.write(notebook, output)   # what ran, for the test to inspect
"""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=name_of)
def test_notebook_runs(path, tmp_path):
    """Executed in a child process, so that the notebook's time limit is enforced from
    outside (the child and its kernel are killed when it passes)."""
    if name_of(path) in NEEDS_MNIST and not os.environ.get("HANDGRAD_DATA"):
        pytest.skip("needs MNIST: set HANDGRAD_DATA to the folder holding mnist/ (CI does)")
    executed = tmp_path / "executed.ipynb"
    env = dict(os.environ, MPLBACKEND="module://matplotlib_inline.backend_inline",
               OPENBLAS_NUM_THREADS="1")
    started = time.monotonic()
    # its own process group: on timeout the runner and the kernel it started die together
    child = subprocess.Popen([sys.executable, "-c", RUNNER, path, NOTEBOOK_DIR, str(TIMEOUT),
                              str(executed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, start_new_session=True)
    try:
        _, stderr = child.communicate(timeout=NOTEBOOK_BUDGET)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        pytest.fail(f"{name_of(path)} did not finish within {NOTEBOOK_BUDGET} s")
    seconds = time.monotonic() - started
    print(f"{name_of(path)}: {seconds:.1f} s")
    assert child.returncode == 0, stderr[-3000:]   # CellExecutionError names the cell
    notebook = nbformat.read(str(executed), as_version=4)
    images = sum(1 for cell in notebook.cells if cell.cell_type == "code"
                 for output in cell.outputs if "image/png" in output.get("data", {}))
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.outputs if output.get("output_type") == "error"]
    assert not errors
    expected = IMAGES.get(name_of(path), 1)
    assert images >= expected, f"{name_of(path)} showed {images} pictures, expected {expected}"
    if name_of(path) == "07_grading":   # alice hands in handgrad's own layers: full marks
        text = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                       for output in cell.outputs if output.get("output_type") == "stream")
        score = re.search(r"alice:\s+(\d+)/(\d+)", text)
        assert score and score.group(1) == score.group(2), (
            f"alice (handgrad's own layers) should get full marks: {text[:1500]}")
