"""
grader/toml_subset.py, the TOML reader of Pythons without tomllib, reads grading configs
exactly as tomllib does, and refuses what it does not support instead of misreading it.
"""
import io

import pytest

from grader import toml_subset

tomllib = pytest.importorskip('tomllib')   # the reference (Python >= 3.11)

DOCUMENTS = [
    '',
    '# only a comment\n',
    '[assignment]\ncontract = true\ninclude = ["layers", "rnn_step_*"]\nexclude = ["*_float32"]\n'
    'visibility = "visible"   # default\n\n[limits]\ntime_per_test = 10\nbudget = 120.5\n'
    'memory_mb = 2_048\n\n[tests.fc_gradients]\npoints = 5\nvisibility = "after_due_date"\n',
    '[tests."quoted name"]\npoints = -3\n[tests.other]\npoints = +4\n',
    'a.b.c = 1\nd = \'lit\\eral\'\ne = "esc \\" \\\\ \\n \\t \\u00e9 \\U0001F600"\n',
    'x = [\n  "a",\n  "b", # comment\n]\ny = []\nz = [1, 2.5, -3e2, inf, -inf, true, false]\n',
    'w = 1.0e-3\nv = 0\nu = "#not a comment"\r\nt = 7\r\n',
]


@pytest.mark.parametrize('text', DOCUMENTS)
def test_reads_like_tomllib(text):
    assert toml_subset.loads(text) == tomllib.loads(text)
    assert toml_subset.load(io.BytesIO(text.encode())) == tomllib.load(io.BytesIO(text.encode()))


@pytest.mark.parametrize('text', [
    'a = 1\na = 2\n', '[t]\n[t]\n', 'a = \n', 'a = "open\n', 'a = [1, 2\n', 'a = {b = 1}\n',
    'a = """x"""\n', '[[t]]\n', 'a = 1 b\n', 'a = 1979-05-27\n', 'a = "\\q"\n', '= 1\n',
    'a = 12abc\n',
])
def test_refuses_what_tomllib_refuses_or_what_it_does_not_support(text):
    with pytest.raises(toml_subset.TOMLDecodeError):
        toml_subset.loads(text)


def test_the_config_reader_uses_it_without_tomllib(tmp_path, monkeypatch):
    import importlib
    import sys
    path = tmp_path / 'grading.toml'
    path.write_text('[assignment]\ninclude = ["fc_*"]\n[tests.fc_gradients]\npoints = 5\n')
    monkeypatch.setitem(sys.modules, 'tomllib', None)   # as on Python 3.9 / 3.10
    from grader import config
    reloaded = importlib.reload(config)
    try:
        assert reloaded.tomllib is toml_subset
        loaded = reloaded.load(str(path), ['fc_gradients'])
        assert loaded.include == ['fc_*'] and loaded.tests == {'fc_gradients': {'points': 5}}
        path.write_text('[assignment\n')
        with pytest.raises(reloaded.ConfigError, match='not valid TOML'):
            reloaded.load(str(path), ['fc_gradients'])
    finally:
        monkeypatch.undo()
        importlib.reload(config)
