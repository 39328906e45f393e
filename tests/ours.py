"""Our modules in a student's folder, for the tests that grade copies of them."""
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What our graded and model modules import besides one another and NumPy: the shared
# argument checks, caption conventions and weight initialisation (NumPy only). A folder
# graded with copies of our modules needs them too, as a course's folder needs its helpers.
HELPER_MODULES = ('validation.py', 'randomness.py', 'captions.py')


def copy_helpers(directory):
    """Copy HELPER_MODULES into directory (a student's folder)."""
    for name in HELPER_MODULES:
        shutil.copy(ROOT / name, Path(directory) / name)
