"""handgrad installs as a package (pyproject.toml): `import layers` etc. work from any
folder, the console entry points run, and an installed grader refuses to grade other
people's files while a submission could import the installed reference solution."""
import os
import re
import shutil
import subprocess
import sys

import pytest

try:
    import tomllib
except ImportError:   # Python < 3.11
    from grader import toml_subset as tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pyproject_dependencies_are_requirements_txt():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    with open(os.path.join(REPO, "requirements.txt")) as f:
        requirements = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert project["dependencies"] == requirements
    modules = tomllib.load(open(os.path.join(REPO, "pyproject.toml"), "rb"))["tool"]["setuptools"]["py-modules"]
    top_level = sorted(name[:-3] for name in os.listdir(REPO) if name.endswith(".py"))
    assert sorted(modules) == top_level   # a new module must be listed to be installed


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh virtual environment (reusing this Python's numpy & co.) with handgrad
    installed from this clone, not editable."""
    root = tmp_path_factory.mktemp("venv")
    # build from a copy of the tracked files only (setuptools writes build/ and
    # *.egg-info next to the sources; the working tree may hold results, caches, a .venv)
    source = root / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if os.path.isfile(os.path.join(REPO, name)):
            os.makedirs(os.path.dirname(source / name), exist_ok=True)
            shutil.copy2(os.path.join(REPO, name), source / name)
    # a venv of the base interpreter that sees this interpreter's packages (numpy & co.)
    # through a .pth file: `--system-site-packages` would see the base's, not those of a
    # venv the tests run in
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(root / "env")], check=True)
    import site
    import sysconfig
    ours = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if os.path.isdir(p)]
    env_site = subprocess.run([str(root / "env" / "bin" / "python"), "-c",
                               "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(env_site, "outer-packages.pth"), "w") as f:
        f.write("\n".join(dict.fromkeys(ours)) + "\n")
    python = str(root / "env" / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps",
                              "--disable-pip-version-check", str(source)],
                             capture_output=True, text=True, cwd=str(root))
    assert install.returncode == 0, install.stderr
    return root, python


def test_installed_modules_import_from_any_folder(venv):
    root, python = venv
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    probe = subprocess.run(
        [python, "-c", "import layers, rnn_layers, attention_layers, transformer, kernels, cnn, solver, "
                       "autograder, data, grader.checks; "
                       "print(layers.__file__); print(data.load_mnist.__name__)"],
        capture_output=True, text=True, cwd=str(elsewhere), env={**os.environ, "PYTHONPATH": ""})
    assert probe.returncode == 0, probe.stderr
    location = probe.stdout.splitlines()[0]
    assert "site-packages" in location and not location.startswith(REPO)
    for command in ("handgrad-grade", "handgrad-digits", "handgrad-fashion", "handgrad-captioning",
                    "handgrad-transfer", "handgrad-attention-demo"):
        run = subprocess.run([str(root / "env" / "bin" / command), "--help"],
                             capture_output=True, text=True, cwd=str(elsewhere))
        assert run.returncode == 0 and "usage" in run.stdout, (command, run.stderr)


def test_installed_grader_refuses_to_grade_submissions_that_could_import_it(venv):
    root, python = venv
    student = root / "student"
    student.mkdir()
    # what a student wanting full marks for nothing would submit
    (student / "layers.py").write_text("from kernels import *\nfrom layers import *\n")
    run = subprocess.run([str(root / "env" / "bin" / "handgrad-grade"), "--target", str(student)],
                         capture_output=True, text=True, cwd=str(root))
    assert run.returncode == 2
    assert re.search(r"reference modules are installed where the sandbox can import them", run.stderr)
    assert "pip install -e ." in run.stderr and "Traceback" not in run.stderr
